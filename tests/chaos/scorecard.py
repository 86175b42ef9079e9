"""Renders docs/reliability.md from the JSON the suites wrote: one row per chaos scenario
(artifacts/reliability/chaos/*.json, tests/chaos/harness.py) and one per attack test
(artifacts/reliability/attacks.json, tests/chaos/report.py). `bin/reliability` runs both suites
and then this; nothing in the page is typed by hand.

    python -m tests.chaos.scorecard --results artifacts/reliability --out docs/reliability.md \\
        --command "bin/reliability"
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.chaos.audit import ABANDON_AFTER

REPO = Path(__file__).resolve().parents[2]


def load_rows(results: Path) -> list[dict[str, Any]]:
    """The scenario rows, in the order the suite ran them (file time), then by name."""
    files = sorted((results / "chaos").glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name))
    return [json.loads(p.read_text()) for p in files]


def load_attacks(results: Path) -> list[dict[str, Any]]:
    path = results / "attacks.json"
    if not path.exists():
        return []
    attacks: list[dict[str, Any]] = json.loads(path.read_text())
    return sorted(attacks, key=lambda a: (_finding_order(a["attack"]), a["test"]))


def _finding_order(text: str) -> tuple[int, str]:
    head = text.split(":", 1)[0].strip()
    digits = "".join(ch for ch in head if ch.isdigit())
    return (int(digits) if digits else 999, head)


def machine() -> dict[str, str]:
    """What ran it: CPU count, memory, kernel, Python."""
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    return {
        "cpus": str(os.cpu_count() or "?"),
        "memory": memory or "?",
        "system": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": platform.python_version(),
    }


def commit() -> str:
    """HEAD's short hash, with `+changes` when the work tree differs from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/reliability.md")
    return f"{head}+changes" if dirty else head


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _recover(row: dict[str, Any]) -> str:
    seconds = row.get("recover_seconds")
    return "not drained" if seconds is None else f"{seconds:g} s"


def _carts(carts: dict[str, int]) -> str:
    if not carts:
        return "—"
    counts = (carts.get(k, 0) for k in ("abandoned", "recovered", "ordered", "emptied"))
    return " · ".join(str(n) for n in counts)


def scenario_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| scenario | faults | changes made | objects + events audited | carts audited"
        " (abandoned · recovered · ordered · emptied) | delivered | lost"
        " | doubled (in flight / other) | dead-lettered | time to recover | seed | outcome |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        audited = r["objects"] + r["events_expected"]
        faults = ", ".join(r["faults"]) or "none"
        lines.append(
            "| "
            + " | ".join(
                _cell(v)
                for v in (
                    f"`{r['scenario']}` ({r['size']})",
                    faults,
                    r["changes_made"],
                    audited,
                    _carts(r.get("carts") or {}),
                    r["delivered"],
                    r["lost"],
                    f"{r['doubled_in_flight']} / {r['doubled_other']}",
                    r["dead_lettered"],
                    _recover(r),
                    r["seed"],
                    "passed" if r["passed"] else "**FAILED**",
                )
            )
            + " |"
        )
    return lines


def attack_table(attacks: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| finding | the attack | regression test | outcome |",
        "| --- | --- | --- | --- |",
    ]
    for a in attacks:
        finding, _, text = a["attack"].partition(":")
        outcome = {"passed": "repelled (passed)", "failed": "**NOT REPELLED (failed)**"}.get(
            a["outcome"], a["outcome"]
        )
        lines.append(
            f"| {_cell(finding.strip())} | {_cell(text.strip() or a['attack'])} "
            f"| `{_cell(a['test'])}` | {outcome} |"
        )
    return lines


def problems(rows: Sequence[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for r in rows:
        if r.get("problems"):
            out.append(f"- `{r['scenario']}`:")
            out.extend(f"  - {_cell(p)}" for p in r["problems"])
    return out


def render(
    rows: Sequence[dict[str, Any]],
    attacks: Sequence[dict[str, Any]],
    *,
    command: str,
    when: str,
    revision: str,
    host: dict[str, str],
) -> str:
    passed = sum(1 for r in rows if r["passed"])
    repelled = sum(1 for a in attacks if a["outcome"] == "passed")
    made = sum(r["changes_made"] for r in rows)
    lines = [
        "# Reliability scorecard",
        "",
        "<!-- Generated by bin/reliability (tests/chaos/scorecard.py) from the suites' JSON;"
        " do not edit by hand: run the command below again. -->",
        "",
        f"- **Command:** `{command}`",
        f"- **Date:** {when}",
        f"- **Commit:** `{revision}`",
        f"- **Machine:** {host['cpus']} CPUs, {host['memory']} memory, {host['system']},"
        f" Python {host['python']}",
        f"- **Chaos scenarios:** {passed} of {len(rows)} passed, {made} store changes made in"
        " WordPress",
        f"- **Attacks:** {repelled} of {len(attacks)} repelled",
        "",
        "## Chaos scenarios",
        "",
        "Each scenario makes shop traffic in the test WordPress with the plugin (customers,"
        " variable products and their variations, coupons, orders through their statuses, refunds,"
        " and shoppers' carts, logged in and guests: filled, changed, emptied, checked out, left,"
        " and some left ones restored through their link and bought; the agent's"
        f" `abandon_after` is {ABANDON_AFTER:g} s),"
        " shipped by the plugin's own shipper through a TCP proxy to the real agent"
        " (`python -m agent.cli run`), which forwards to the Brevo fake. The audit at the end"
        " compares the last version of every object WordPress holds with what Brevo holds"
        " (contacts' attributes and lists, orders' status and amount, products' names,"
        " variations' prices and parents, coupon codes) and counts each order's lifecycle"
        " events, and each cart's abandonment (its items, totals and restore link) and recovery"
        " events: required, forbidden or allowed by when the cart's changes reached the agent"
        " (the rule in `tests/chaos/audit.py`). A duplicate is *in flight* when a kill -9 fell between its two sendings (the"
        " one exception docs/durability.md documents, at most 8 per kill); any other is"
        " *other*. A scenario passes with nothing lost, no other duplicate and the backlog"
        " drained. *Time to recover*: from the end of the last fault (or of the traffic) until"
        " everything made was in Brevo. Faults happen at points of the traffic drawn from the"
        " seed; `WOOBREVO_CHAOS_SEED=<seed> bin/reliability` replays them. Sources:"
        " `tests/chaos/`.",
        "",
        *scenario_table(rows),
        "",
    ]
    found = problems(rows)
    if found:
        lines += ["### What the audit found", "", *found, ""]
    lines += [
        "## Attacks (issue 16)",
        "",
        "Every regression test marked `@pytest.mark.attack(...)`: it reproduces the attack or"
        " fault on real loopback servers; *repelled* means the test passed.",
        "",
        *attack_table(attacks),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, required=True, help="folder of the suites' JSON")
    parser.add_argument("--out", type=Path, required=True, help="the markdown file to write")
    parser.add_argument("--command", required=True, help="the command that ran the suites")
    args = parser.parse_args(argv)
    rows = load_rows(args.results)
    attacks = load_attacks(args.results)
    if not rows and not attacks:
        parser.error(f"no results in {args.results}: run the suites first (bin/reliability)")
    text = render(
        rows,
        attacks,
        command=args.command,
        when=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        revision=commit(),
        host=machine(),
    )
    args.out.write_text(text)
    print(f"wrote {args.out}: {len(rows)} scenarios, {len(attacks)} attacks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
