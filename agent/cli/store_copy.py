"""`woobrevo-agent store copy --from state/woobrevo.sqlite3 --to postgresql://…`: move an
installation's state from its SQLite file into a PostgreSQL store (agent/store/postgres/copy.py;
the procedure: docs/postgresql.md, "Moving an installation to PostgreSQL").

A bar per table on a terminal, a plain line per table otherwise. Refused while an agent runs
on the file (unless `--live`: a first pass, to be finished by a run after the agent stopped).
The database's password is never shown (give it through PGPASSWORD or ~/.pgpass).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import TextIO

import psycopg

from agent.cli.progress import BarProgress, format_line
from agent.errors import EXIT_OK, AgentError
from agent.logs import protect
from agent.store.postgres import is_postgres, migrate, shown
from agent.store.postgres.copy import Progress, copy_store, no_agent_running
from agent.store.postgres.dsn import masked, password

__all__ = ["add_copy_arguments", "copy_command"]


def add_copy_arguments(sp: argparse.ArgumentParser) -> None:
    """`store copy`'s options."""
    sp.add_argument("--from", dest="source", help="copy: the SQLite store file")
    sp.add_argument("--to", dest="target", help="copy: the PostgreSQL store's address")
    sp.add_argument(
        "--live",
        action="store_true",
        help="copy: a first pass while the agent runs (stop it, then copy again to finish)",
    )
    sp.add_argument("--chunk-rows", type=int, default=2000, help="copy: rows per transaction")


class _Bars(Progress):
    def __init__(self, out: TextIO) -> None:
        self.bars = BarProgress(out)
        self.totals: dict[str, int] = {}

    def start(self, table: str, total: int) -> None:
        self.totals[table] = total
        self.bars.update(table, 0, total)

    def advance(self, table: str, done: int) -> None:
        self.bars.update(table, done, self.totals.get(table))

    def finish(self, table: str, done: int, written: int, removed: int) -> None:
        self.bars.finish(table, done)


class _Lines(Progress):
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.began = time.monotonic()

    def start(self, table: str, total: int) -> None:
        self.began = time.monotonic()

    def finish(self, table: str, done: int, written: int, removed: int) -> None:
        line = format_line(table, done, done, time.monotonic() - self.began)
        print(f"copy {line}: {written} written, {removed} removed", file=self.out, flush=True)


def copy_command(args: argparse.Namespace) -> int:
    """Run `store copy`; prints the verified counts."""
    if not args.source or not args.target:
        raise AgentError(
            "store copy needs --from (the SQLite file) and --to (postgresql://user@host/db)"
        )
    dsn: str = args.target
    if not is_postgres(dsn):
        raise AgentError(
            f"--to {shown(dsn)}: expected a PostgreSQL address (postgresql://user@host/dbname)"
        )
    protect([password(dsn)])
    source = Path(args.source)
    asyncio.run(_migrate(dsn))
    out = sys.stdout
    progress = _Bars(out) if out.isatty() else _Lines(out)
    if args.live:
        print(f"{source} -> {shown(dsn)}: a live pass beside the running agent")
        result = copy_store(source, dsn, chunk=args.chunk_rows, live=True, progress=progress)
    else:
        with no_agent_running(source):
            result = copy_store(source, dsn, chunk=args.chunk_rows, progress=progress)
    where = shown(dsn)
    if result.resumed and not result.already_finished:
        print(f"{source} -> {where}: resumed from the last checkpoint of an interrupted copy")
    if result.counts is None:
        print(
            f"{source} -> {where}: a live pass, not verified: stop the agent, then run this"
            " command again without --live to copy the rest and verify"
        )
        return EXIT_OK
    total = sum(result.counts.values())
    again = " (it had finished before: verified again, nothing written)"
    print(
        f"{source} -> {where}: verified, {total} rows in {len(result.counts)} tables match"
        f" (counts and checksums){again if result.already_finished else ''}; now set"
        " agent.store to the PostgreSQL address and start the agent"
    )
    return EXIT_OK


async def _migrate(dsn: str) -> None:
    where = shown(dsn)
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as db:
            await migrate(db, where)
    except psycopg.Error as exc:
        raise AgentError(
            f"cannot migrate the PostgreSQL store {where}: {masked(str(exc).strip(), dsn)}"
        ) from None
