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

Carts (docs/carts.md; the traffic's shoppers, tests/chaos/wp_traffic.php, with the agent's
`abandon_after` set to `ABANDON_AFTER`). Whether a cart is abandoned depends on when its
changes reached the agent, not only on when the shopper made them: a change, an order or an
emptying that reaches the agent after the timer of the version before it fired comes too late
(the outbox was held up by a fault). So the rule reads, from the agent's inbox, when each cart
event (and its checkout order's events) arrived, and judges each version the agent received
(its time `t`, its due time `t + ABANDON_AFTER`, its abandonment stamped with that due time):

- the last version of a cart still open in WordPress: its abandonment is required, exactly once,
  with the values WordPress holds (items, totals, coupons, currency, the restore link);
- a version followed (the next version, the emptying or the order) by something that arrived
  more than `CART_SLACK` before its due time: no abandonment allowed (the agent processes what
  its inbox holds before it fires timers; the slack covers an event stored between the two);
- a version whose follower arrived more than `CART_SLACK` after its due time: its abandonment is
  required (the timer fired before the follower came), unless a kill -9 or a fault window (and
  `FAULT_TAIL` after it: the restart, the store's retry after a full disk) overlaps that time:
  the agent may have been down when it came due, and a restarted agent processes its inbox
  before its timers;
- any other version (its follower arrived within `CART_SLACK` of its due time, or during a
  fault): the abandonment may or may not have fired, once at most, with that version's values;
- an ordered cart: `cart_recovered` once (its order id and amount) when an abandonment of it is
  in Brevo and the order was placed at or after the first one's due time; else none (an order
  placed before the abandonment withdraws it: the list left, no recovery event);
- an emptied or ordered cart whose end never reached the agent, or an open cart whose last
  WordPress snapshot did not, is lost.

An abandonment or recovery seen twice is doubled, with the same in-flight rule as orders'.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.core.times import gmt_seconds, utc_stamp
from agent.forward.forwarder import MAX_IN_FLIGHT

LIST_ALL = 50  # tests/e2e/conftest.py's Agent: lists.all_customers
CART_LIST = 52  # the scenario's lists.abandoned_cart (harness.py)
ABANDON_AFTER = 3.0  # the scenario's carts.abandon_after, seconds (harness.py)
CART_SLACK = 1.0  # seconds: see the module docstring
FAULT_TAIL = 8.0  # seconds after a kill or a fault window the agent may still be catching up
ABANDONED, RECOVERED = "cart_abandoned", "cart_recovered"
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
    # The carts: how many ended how in WordPress (open, emptied, ordered), and how many of the
    # abandonments and recoveries Brevo holds were required, and allowed by timing only.
    carts: Counter[str] = field(default_factory=Counter)

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


def _sendings(
    brevo: Any, key_of: Callable[[dict[str, Any]], tuple[str, int] | None] = _event_key
) -> dict[tuple[str, int], list[float]]:
    """When Brevo recorded each order event (or each `key_of` names: POST /events and
    /events/batch), in order."""
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
            key = key_of(body) if isinstance(body, dict) else None
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


# -------------------------------------------------------------------------------- carts


@dataclass
class _Version:
    """One cart version the agent received: its abandonment's stamp, its values, and what may
    happen to that abandonment (module docstring)."""

    due: float
    values: dict[str, Any]
    rule: str  # "required", "forbidden" or "optional"


@dataclass
class Inbox:
    """The agent's inbox as the cart rule reads it: per cart and per order, the rows in the
    order they were stored (received_at, action, payload)."""

    carts: dict[int, list[tuple[int, float, str, dict[str, Any]]]] = field(default_factory=dict)
    orders: dict[int, list[tuple[int, float, str, dict[str, Any]]]] = field(default_factory=dict)
    # When the agent may not have fired a timer that came due (wall clock): a kill and its
    # restart, a fault window, each with FAULT_TAIL after it.
    stalls: list[tuple[float, float]] = field(default_factory=list)

    def stalled(self, start: float, end: float) -> bool:
        return any(a <= end and start <= b for a, b in self.stalls)


def read_inbox(state_dir: Path) -> Inbox:
    """Cart and order rows of the agent's inbox (kept `agent.inbox_retention`, 7 days)."""
    inbox = Inbox()
    path = state_dir / "woobrevo.sqlite3"
    if not path.exists():
        return inbox
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute(
            "SELECT seq, resource, resource_id, received_at, action, payload FROM inbox"
            " WHERE resource IN ('cart', 'order') ORDER BY seq"
        ).fetchall()
    except sqlite3.OperationalError:  # the store is not made yet
        rows = []
    finally:
        db.close()
    for seq, resource, rid, received, action, payload in rows:
        into = inbox.carts if resource == "cart" else inbox.orders
        into.setdefault(int(rid), []).append(
            (int(seq), float(received), str(action), json.loads(payload))
        )
    return inbox


def _cart_values(
    cart: dict[str, Any], total: object, currency: object, restore_url: object
) -> dict[str, Any]:
    items = [
        (
            i.get("product_id"),
            i.get("variation_id"),
            i.get("name"),
            i.get("quantity"),
            _money(i.get("price")),
        )
        for i in cart.get("items") or []
    ]
    return {
        "total": _money(total),
        "currency": currency,
        "restore_url": restore_url,
        "items": items,
        "coupons": list(cart.get("coupons") or []),
    }


def cart_values(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What an abandonment must carry of a snapshot (docs/carts.md's property table)."""
    totals = snapshot.get("totals") or {}
    return _cart_values(
        snapshot, totals.get("total"), snapshot.get("currency"), snapshot.get("restore_url")
    )


def event_values(props: dict[str, Any]) -> dict[str, Any]:
    """The same of an abandonment event's properties."""
    cart = props.get("cart") or {}
    return _cart_values(cart, props.get("total"), props.get("currency"), props.get("restore_url"))


def _versions(cart: dict[str, Any], inbox: Inbox) -> dict[str, list[_Version]]:
    """The versions of a cart the agent received, by the stamp of their abandonment."""
    rows = list(inbox.carts.get(cart["id"], []))
    if cart["order"]:
        rows += inbox.orders.get(cart["order"], [])
    rows.sort(key=lambda r: r[0])
    out: dict[str, list[_Version]] = {}
    for i, (_, _, action, payload) in enumerate(rows):
        if action not in ("updated", "restored") or "token" not in payload:
            continue  # an order's row, or the end
        t = gmt_seconds(payload.get("date_modified_gmt"))
        if t is None:
            continue
        due = t + ABANDON_AFTER
        later = [r[1] for r in rows[i + 1 :]]
        if not later:
            rule = "required" if cart["end"] == "open" else "optional"
        elif min(later) < due - CART_SLACK:
            rule = "forbidden"
        elif min(later) > due + CART_SLACK and not inbox.stalled(due - CART_SLACK, min(later)):
            rule = "required"
        else:
            rule = "optional"
        out.setdefault(utc_stamp(due), []).append(_Version(due, cart_values(payload), rule))
    return out


def _cart_events(brevo: Any) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Brevo's cart events by (name, cart id)."""
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for e in brevo.events:
        props = e.get("event_properties") or {}
        if e.get("event_name") in (ABANDONED, RECOVERED) and isinstance(props.get("cart_id"), int):
            out.setdefault((str(e["event_name"]), int(props["cart_id"])), []).append(e)
    return out


def _cart_key(body: dict[str, Any]) -> tuple[str, int] | None:
    props = body.get("event_properties") or {}
    name = body.get("event_name")
    if name in (ABANDONED, RECOVERED) and isinstance(props.get("cart_id"), int):
        stamp = str(body.get("event_date") or "")
        return f"{name}@{stamp}", int(props["cart_id"])
    return None


class _Doubles:
    """Duplicates of one kind of event, classified as `check_events` does (in flight across a
    kill, at most MAX_IN_FLIGHT per kill, or other)."""

    def __init__(self, brevo: Any, kills: list[float], audit: Audit) -> None:
        self.sendings = _sendings(brevo, _cart_key)
        self.kills = kills
        self.audit = audit
        self.per_kill: Counter[float] = Counter()

    def extra(self, key: tuple[str, int], got: int, what: str) -> None:
        extra = got - 1
        times = sorted(self.sendings.get(key, []))
        for i in range(1, len(times)):
            between = [k for k in self.kills if times[i - 1] <= k <= times[i]]
            if extra > 0 and between and self.per_kill[between[0]] < MAX_IN_FLIGHT:
                self.per_kill[between[0]] += 1
                self.audit.doubled_in_flight += 1
                extra -= 1
        if extra > 0:
            self.audit.doubled_other += extra
            self.audit.problems.append(f"{what} x{got} (times {times})")


def _abandonments(
    cart: dict[str, Any],
    versions: dict[str, list[_Version]],
    got: list[dict[str, Any]],
    doubles: _Doubles,
    audit: Audit,
) -> list[float]:
    """Checks a cart's abandonment events; returns the due times of those Brevo holds."""
    by_stamp: dict[str, list[dict[str, Any]]] = {}
    for e in got:
        by_stamp.setdefault(str(e.get("event_date")), []).append(e)
    held = []
    for stamp in sorted(set(versions) | set(by_stamp)):
        rules = {v.rule for v in versions.get(stamp, [])}
        events = by_stamp.get(stamp, [])
        what = f"cart {cart['id']}: {ABANDONED} of {stamp}"
        if "required" in rules:
            audit.events_expected += 1
        if not events:
            if "required" in rules:
                audit.miss(f"{what}: not in Brevo")
            continue
        if rules <= {"forbidden"}:  # also: a stamp of no version the agent received
            audit.doubled_other += len(events)
            audit.problems.append(f"{what}: in Brevo x{len(events)}, its cart ended before it")
            continue
        allowed = [v.values for v in versions[stamp] if v.rule != "forbidden"]
        have = event_values(events[0].get("event_properties") or {})
        if have not in allowed:
            audit.miss(f"{what}: Brevo has {have}, the cart had {allowed[-1]}")
            continue
        audit.delivered += int("required" in rules)
        audit.carts["abandoned" if "required" in rules else "abandoned (late end)"] += 1
        held.append(versions[stamp][0].due)
        if len(events) > 1:
            doubles.extra((f"{ABANDONED}@{stamp}", cart["id"]), len(events), what)
    return held


def check_carts(
    truth: dict[str, Any], brevo: Any, inbox: Inbox, kills: list[float], audit: Audit
) -> None:
    """Every cart the traffic made against Brevo's cart events (module docstring)."""
    events = _cart_events(brevo)
    doubles = _Doubles(brevo, kills, audit)
    totals = {o["id"]: o["total"] for o in truth["orders"]}
    for n in range(int(truth.get("carts_lost", 0))):
        audit.miss(f"cart {n + 1} of the traffic: the plugin captured no cart")
    for cart in truth.get("carts", []):
        audit.objects += 1
        cid, snapshot = cart["id"], cart.get("snapshot") or {}
        versions = _versions(cart, inbox)
        received = inbox.carts.get(cid, [])
        if cart["end"] == "open":
            last = received[-1][3] if received else {}
            if last.get("restore_url") != snapshot.get("restore_url"):
                audit.miss(f"cart {cid}: its last snapshot never reached the agent")
                continue
        elif not received or (
            all(r[2] != "emptied" for r in received) and not inbox.orders.get(cart["order"])
        ):
            audit.miss(f"cart {cid}: its end ({cart['end']}) never reached the agent")
            continue
        audit.carts[cart["end"]] += 1
        audit.carts["restored"] += int(cart.get("restored", 0) > 0)
        held = _abandonments(cart, versions, events.get((ABANDONED, cid), []), doubles, audit)
        _recovery(cart, held, events.get((RECOVERED, cid), []), inbox, totals, doubles, audit)
        if cart["end"] != "open" and not held:
            strict = all(v.rule == "forbidden" for vs in versions.values() for v in vs)
            audit.carts["ended before its timer" if strict else "ended late, not abandoned"] += 1


def _recovery(
    cart: dict[str, Any],
    held: list[float],
    got: list[dict[str, Any]],
    inbox: Inbox,
    totals: dict[int, Any],
    doubles: _Doubles,
    audit: Audit,
) -> None:
    """`cart_recovered` once when its order came at or after its first abandonment, else none
    (the order's time: its date_created, or the ordered cart's snapshot, whichever came first)."""
    placed: list[float] = []
    amounts = {_money(totals.get(cart["order"]))}
    for *_, payload in inbox.orders.get(cart["order"], [])[:1]:
        placed.append(gmt_seconds(payload.get("date_created_gmt")) or 0.0)
    for _, _, action, payload in inbox.carts.get(cart["id"], []):
        if action == "emptied" and payload.get("order_id") == cart["order"] and cart["order"]:
            placed.append(gmt_seconds(payload.get("date_modified_gmt")) or 0.0)
            amounts.add(_money((payload.get("totals") or {}).get("total")))
    what = f"cart {cart['id']}: {RECOVERED}"
    first = min(held, default=None)
    if cart["end"] != "ordered" or first is None or all(t < first for t in placed):
        if got:
            audit.doubled_other += len(got)
            audit.problems.append(f"{what} x{len(got)}, but no order came after an abandonment")
        return
    required = all(t >= first for t in placed)
    audit.events_expected += int(required)
    if not got:
        if required:
            audit.miss(f"{what}: not in Brevo (order {cart['order']})")
        return
    props = got[0].get("event_properties") or {}
    if props.get("order_id") != cart["order"] or _money(props.get("amount")) not in amounts:
        audit.miss(f"{what}: Brevo has {props}, WordPress order {cart['order']} {amounts}")
        return
    audit.delivered += int(required)
    audit.carts["recovered" if required else "recovered (timing)"] += 1
    if len(got) > 1:
        doubles.extra((f"{RECOVERED}@{got[0].get('event_date')}", cart["id"]), len(got), what)


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


def audit(
    truths: list[dict[str, Any]],
    brevo: Any,
    kills: list[float],
    state_dir: Path,
    faults: Sequence[tuple[float, float | None]] = (),
) -> Audit:
    """The whole audit over every traffic stream's truth. `kills` and `faults` (windows, None:
    not over) are `time.monotonic` times."""
    result = Audit()
    inbox = read_inbox(state_dir)
    wall = time.time() - time.monotonic()
    for start, end in [(k, k) for k in kills] + list(faults):
        inbox.stalls.append(
            (start + wall, (time.monotonic() if end is None else end) + wall + FAULT_TAIL)
        )
    for truth in truths:
        check_objects(truth, brevo, result)
        check_events(truth, brevo, kills, result)
        check_carts(truth, brevo, inbox, kills, result)
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
