"""The audit every chaos scenario ends with: what WordPress holds against what Brevo holds.

The truth is what `wp_traffic.php made TAG` reads back from WooCommerce at the end (the last
version of every object the scenario made). Brevo must hold, for each:

- customer: a contact with that e-mail, FIRSTNAME, LASTNAME and CITY as WordPress has them now,
  in the all-customers list;
- order: the order with its status and amount, and its lifecycle events once each, as its final
  state implies them (the traffic never moves an order back: placed always; paid once it is
  processing or completed; fulfilled once completed; refunded once refunded; cancelled once
  cancelled);
- product: its name; variation: its price and its parent; coupon: its code.

An expected event seen twice is doubled. docs/durability.md ("The exception") allows one kind: a
request in flight when the agent was killed, sent again after the restart. A duplicate counts as
that documented case when a kill -9 fell between its two sendings, and at most
`MAX_IN_FLIGHT` of them per kill (the agent never has more in flight); any other is "other".
An event the traffic cannot cause (an order cancelled that never was) counts as other too.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.forward.forwarder import MAX_IN_FLIGHT

LIST_ALL = 50  # tests/e2e/conftest.py's Agent: lists.all_customers
PAID = ("processing", "completed")
ORDER_EVENTS = (
    "order_placed",
    "order_paid",
    "order_fulfilled",
    "order_refunded",
    "order_cancelled",
)


@dataclass
class Audit:
    """What the audit found; `problems` names each loss or unexplained duplicate."""

    objects: int = 0
    events_expected: int = 0
    delivered: int = 0
    lost: int = 0
    doubled_in_flight: int = 0
    doubled_other: int = 0
    dead_letters: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        unexplained = self.dead_letter_reasons.get("", 0)
        return self.lost == 0 and self.doubled_other == 0 and unexplained == 0

    def miss(self, what: str) -> None:
        self.lost += 1
        if len(self.problems) < 40:
            self.problems.append(what)


def expected_events(order: dict[str, Any]) -> dict[str, int]:
    """The lifecycle events an order's final state implies (module docstring)."""
    status = order["status"]
    return {
        "order_placed": 1,
        "order_paid": int(status in PAID),
        "order_fulfilled": int(status == "completed"),
        "order_refunded": int(order["refunds"] > 0),
        "order_cancelled": int(status == "cancelled"),
    }


def _money(value: Any) -> float:
    return round(float(value or 0), 2)


def check_objects(truth: dict[str, Any], brevo: Any, audit: Audit) -> None:
    """Every object's last version, field by field (module docstring)."""
    for c in truth["customers"]:
        audit.objects += 1
        got = brevo.contacts.get(c["email"].lower())
        want = {"FIRSTNAME": c["first_name"], "LASTNAME": c["last_name"], "CITY": c["city"]}
        if got is None:
            audit.miss(f"customer {c['id']} {c['email']}: no contact in Brevo")
            continue
        have = {k: got["attributes"].get(k) for k in want}
        if have != want or LIST_ALL not in got.get("listIds", []):
            audit.miss(
                f"customer {c['id']}: Brevo has {have} lists {got.get('listIds')}, not {want}"
            )
            continue
        audit.delivered += 1
    for o in truth["orders"]:
        audit.objects += 1
        got = brevo.orders.get(str(o["id"]))
        if got is None:
            audit.miss(f"order {o['id']}: not in Brevo")
        elif got.get("status") != o["status"] or _money(got.get("amount")) != _money(o["total"]):
            audit.miss(
                f"order {o['id']}: Brevo has {got.get('status')} {got.get('amount')},"
                f" WordPress {o['status']} {o['total']}"
            )
        else:
            audit.delivered += 1
    for p in truth["products"]:
        audit.objects += 1
        got = brevo.products.get(str(p["id"]))
        if got is None or got.get("name") != p["name"]:
            name = None if got is None else got.get("name")
            audit.miss(f"product {p['id']}: Brevo has name {name!r}, WordPress {p['name']!r}")
        else:
            audit.delivered += 1
    for v in truth["variations"]:
        audit.objects += 1
        got = brevo.products.get(str(v["id"]))
        if (
            got is None
            or str(got.get("parentId")) != str(v["parent"])
            or _money(got.get("price")) != _money(v["price"])
        ):
            audit.miss(f"variation {v['id']}: Brevo has {got}, WordPress price {v['price']}")
        else:
            audit.delivered += 1
    codes = {code.lower() for collection in brevo.coupons.values() for code in collection}
    for c in truth["coupons"]:
        audit.objects += 1
        if c["code"].lower() in codes:
            audit.delivered += 1
        else:
            audit.miss(f"coupon {c['id']} {c['code']}: not in Brevo")


def _event_key(body: dict[str, Any]) -> tuple[str, int] | None:
    props = body.get("event_properties") or {}
    name = body.get("event_name")
    if name in ORDER_EVENTS and isinstance(props.get("order_id"), int):
        return str(name), int(props["order_id"])
    return None


def _sendings(brevo: Any) -> dict[tuple[str, int], list[float]]:
    """When Brevo recorded each order event (POST /events and /events/batch), in order."""
    times: dict[tuple[str, int], list[float]] = {}
    for r in brevo.requests:
        if r.method != "POST" or r.status is None or r.status >= 300:
            continue
        bodies: list[Any] = []
        if r.path == "/events":
            bodies = [r.json]
        elif r.path == "/events/batch" and isinstance(r.json, dict):
            bodies = list(r.json.get("events") or [])
        for body in bodies:
            key = _event_key(body) if isinstance(body, dict) else None
            if key is not None:
                times.setdefault(key, []).append(r.time)
    return times


def check_events(truth: dict[str, Any], brevo: Any, kills: list[float], audit: Audit) -> None:
    """Each expected event once; duplicates classified (module docstring)."""
    seen = Counter(k for k in (_event_key(e) for e in brevo.events) if k is not None)
    sendings = _sendings(brevo)
    per_kill: Counter[float] = Counter()
    for o in truth["orders"]:
        for name, want in expected_events(o).items():
            got = seen.get((name, o["id"]), 0)
            audit.events_expected += want
            if got < want:
                audit.miss(f"order {o['id']}: no {name} event in Brevo")
                continue
            audit.delivered += want
            extra = got - want
            if want == 0 and extra:
                audit.doubled_other += extra
                audit.problems.append(f"order {o['id']}: {name} x{got}, its history has none")
                continue
            times = sorted(sendings.get((name, o["id"]), []))
            for i in range(1, len(times)):
                between = [k for k in kills if times[i - 1] <= k <= times[i]]
                if between and per_kill[between[0]] < MAX_IN_FLIGHT:
                    per_kill[between[0]] += 1
                    audit.doubled_in_flight += 1
                    extra -= 1
            if extra > 0:
                audit.doubled_other += extra
                audit.problems.append(f"order {o['id']}: {name} x{got} (times {times})")


def dead_letters(state_dir: Path) -> list[tuple[str, str, str]]:
    """(kind, code, message) of every dead letter in the agent's store."""
    path = state_dir / "woobrevo.sqlite3"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [
            (str(k), str(c), str(m))
            for k, c, m in db.execute("SELECT kind, code, message FROM dead_letters")
        ]
    except sqlite3.OperationalError:  # the worker has not made the table yet
        return []
    finally:
        db.close()


def audit(truths: list[dict[str, Any]], brevo: Any, kills: list[float], state_dir: Path) -> Audit:
    """The whole audit over every traffic stream's truth."""
    result = Audit()
    for truth in truths:
        check_objects(truth, brevo, result)
        check_events(truth, brevo, kills, result)
    letters = dead_letters(state_dir)
    result.dead_letters = len(letters)
    reasons: Counter[str] = Counter()
    for kind, code, message in letters:
        reasons[f"{kind}: {code}" if code and message else ""] += 1
    result.dead_letter_reasons = dict(reasons)
    return result


def merged(truths: list[dict[str, Any]]) -> str:
    """The truths as one JSON text (kept beside the scenario's row for a failed audit)."""
    return json.dumps(truths, indent=1, sort_keys=True)
