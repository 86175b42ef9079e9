"""Replicas on PostgreSQL (issue 17): durable-ack throughput and end-to-end drain time with 1, 2
and 3 agent replicas sharing a PostgreSQL store against 1 agent on SQLite, 200 sites, in one
sitting; then kill -9 one replica of three under load.

    .venv/bin/python bench/replicas.py [--sites 200] [--batches 3] [--repeat 3]
                                       [--replicas 1,2,3] [--kill-batches 8] [--no-kill]

Every agent is a real `python -m agent.cli run` (its doors process and its worker process) with
its own `agent.state_dir`, `agent.replica` and ports, the same config otherwise. PostgreSQL is
the server `WOOBREVO_TEST_PG` names, else a private one started here (Debian's `postgresql`,
bin/system-packages; a unix socket in a temp folder, `fsync` and `synchronous_commit` left on,
as the SQLite store's `synchronous=FULL`: both acks wait for the disk), a new database per run.
Brevo is the fake (tests/fakes/brevo) in its own process, not refusing anything: the agents get
Brevo's general plan limits divided by `--time-scale` (`brevo.rate_limits`, as bench/drain.py),
so the agent's own work bounds the drain; the fake counts the requests over those limits (the
replicas share one account's budgets in PostgreSQL: any excess shows there).

The load: one process (this one) holds a websocket per site, site k on replica k mod N (a load
balancer's round robin), each pipelining `--window` batches of 100 REST orders (~3 KB each,
bench/streamkit.py) until its `--batches` are acked (acks only after the commit). Figures:

- sustained events/s: events acked / time from the first send to the last ack;
- drain: from the first send to the last request the Brevo fake answered, once the store holds
  no unprocessed event and no job;
- CPU: seconds of CPU per group (the replicas' processes, PostgreSQL's, the load generator,
  the Brevo fake, everything else on the machine) over the load and the drain, from /proc
  (PostgreSQL's reads 0 on a server WOOBREVO_TEST_PG names: its processes are not sampled);
- the audit: every event stored once (the store's inbox), every order written to the fake once.

The kill run: 3 replicas, `--kill-batches` per site; once 30 % of the events are acked and
replica r1 holds Brevo jobs in flight, it gets SIGKILL (its doors and worker processes); its
sites reconnect to the others (the balancer took it out) and send again what was not acked.
Measured: the time until its sites are all connected again, until no job is claimed under its
name any more (another replica took its claims over), the drain, events lost and doubled.
The replicas' takeover key (`agent.replica_timeout`) is set to `--replica-timeout` when agent/config.py has
it; otherwise the claim lease (120 s, agent/store/postgres/jobs.py) is what takes over.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import yaml
from streamkit import (
    BREVO_FAKE_KEY,
    ROOT,
    batch_message,
    free_port,
    machine,
    open_site,
)
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from agent.config import AgentSection
from agent.core.planner import PLAN_LIMITS
from agent.tokens import new_token, token_hash
from tests import pgserver

CLK_TCK = os.sysconf("SC_CLK_TCK")
SIZE = 100  # events per batch

# -- PostgreSQL ---------------------------------------------------------------------------


def server_program(name: str) -> str:
    """A PostgreSQL server program: Debian's newest version's (not on PATH), else PATH's."""
    found = sorted(
        pgserver.DEBIAN_BINS.glob(f"*/bin/{name}"), key=lambda p: int(p.parent.parent.name)
    )
    if found:
        return str(found[-1])
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"no {name}: run bin/system-packages, or set {pgserver.ENV}")
    return path


def run_server_program(cmd: list[str], cwd: Path) -> None:
    """As `postgres` when root (the server refuses root), in the C locale, no PG* variables."""
    runas = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LC_", "LANG"))}
    done = subprocess.run([*runas, *cmd], capture_output=True, text=True, timeout=120,
                          check=False, cwd=cwd, env={**env, "LC_ALL": "C", "LANG": "C"})  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {(done.stderr or done.stdout).strip()[-2000:]}")


@contextlib.contextmanager
def postgres() -> Iterator[tuple[str, int | None]]:
    """(admin DSN, postmaster pid or None): WOOBREVO_TEST_PG's server, else a private one
    with fsync on (tests/pgserver.py's private server turns it off, which suits tests only)."""
    given = os.environ.get(pgserver.ENV, "").strip()
    if given and not pgserver.disabled():
        yield given, None
        return
    folder = Path(tempfile.mkdtemp(prefix="woobrevo-bench-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        info = pwd.getpwnam("postgres")
        os.chown(folder, info.pw_uid, info.pw_gid)
    pg_ctl = server_program("pg_ctl")
    started = False
    try:
        run_server_program([server_program("initdb"), "-D", str(data), "-U", "postgres",
                            "-A", "trust", "-E", "UTF8"], folder)  # fmt: skip
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{folder}' -p {pgserver.PORT}"
            " -c max_connections=200 -c dynamic_shared_memory_type=mmap"
        )
        run_server_program([pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-o", options,
                            "-w", "-t", "60", "start"], folder)  # fmt: skip
        started = True
        pid = int((data / "postmaster.pid").read_text().split()[0])
        yield f"postgresql://postgres@/postgres?host={folder}&port={pgserver.PORT}", pid
    finally:
        if started:
            with contextlib.suppress(SystemExit):
                run_server_program([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], folder)
        shutil.rmtree(folder, ignore_errors=True)


def pg_facts(admin: str) -> dict[str, str]:
    with psycopg.connect(admin, autocommit=True) as db:
        facts = {}
        for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers"):
            row = db.execute(f"SHOW {name}".encode()).fetchone()
            facts[name] = str(row[0]) if row else "?"
    return facts


# -- CPU ----------------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """A process and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return out


def cpu_of(pids: list[int]) -> float:
    """CPU seconds (user + system) the live processes used so far."""
    total = 0
    for p in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def machine_busy() -> float:
    """CPU seconds every core of the machine spent busy so far (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK  # minus idle and iowait


class Cpu:
    """Samples of the groups' CPU seconds; `since` gives cores used per group."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups

    def sample(self) -> dict[str, float]:
        # The load generator is this process alone: the agents and the fake are its children.
        now = {
            name: cpu_of(roots if name == "load" else [p for root in roots for p in tree(root)])
            for name, roots in self.groups.items()
        }
        now["machine"] = machine_busy()
        now["t"] = time.monotonic()
        return now

    @staticmethod
    def since(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        wall = b["t"] - a["t"]
        used = {k: (b[k] - a[k]) / wall for k in a if k != "t"}
        used["others"] = used["machine"] - sum(v for k, v in used.items() if k != "machine")
        return {k: round(v, 2) for k, v in used.items()}


# -- the Brevo fake -----------------------------------------------------------------------


def scaled_limits(scale: float) -> dict[str, list[dict[str, Any]]]:
    return {
        fam: [{"count": c, "per": f"{p / scale * 1000:.3f}ms"} for c, p in windows]
        for fam, windows in PLAN_LIMITS["general"].items()
    }


async def serve_fake(port_file: Path, out: Path, scale: float) -> None:
    """The fake until SIGTERM, then its audit: per order id, the successful writes."""
    from tests.fakes.brevo import BrevoFake

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    fake = BrevoFake(api_key=BREVO_FAKE_KEY, plan="general", time_scale=scale, port=0)
    async with fake:
        write(port_file, f"{fake.port}\n")
        await stop.wait()
    write(out, json.dumps(fake_audit(fake)))


def write(path: Path, text: str) -> None:
    path.write_text(text)


def fake_audit(fake: Any) -> dict[str, Any]:
    """Per order id, the successful writes; the requests by route, status and over limits."""
    orders: Counter[str] = Counter()
    ok = [r for r in fake.requests if r.status is not None and r.status < 300]
    for r in ok:
        if r.path == "/orders/status/batch":
            orders.update(str(o["id"]) for o in r.json["orders"])
        elif r.path == "/orders/status":
            orders[str(r.json["id"])] += 1
    doubled_ids = sorted(o for o, n in orders.items() if n > 1)
    doubled = doubled_ids[:10]
    # A contact written again with the same body is doubled; with another body (a later
    # order's totals, after the first write went out) it is a newer state, not a double.
    contacts: dict[str, list[str]] = {}
    for r in ok:
        if r.method == "POST" and r.path == "/contacts":
            body = json.dumps(r.json, sort_keys=True)
            contacts.setdefault(str(r.json.get("email", "")).lower(), []).append(body)
    return {
        "orders_written": len(orders),
        "orders_doubled": sum(n - 1 for n in orders.values()),
        "doubled_ids": doubled_ids,
        # When, and in how large a request, the first doubled orders were written each time.
        "doubled_sample": {
            o: [
                (round(r.time, 3), len(r.json["orders"]))
                for r in ok
                if r.path == "/orders/status/batch"
                and o in {str(x["id"]) for x in r.json["orders"]}
            ]
            for o in doubled
        },
        "contacts": len(fake.contacts),
        "contacts_doubled": sum(len(b) - len(set(b)) for b in contacts.values()),
        "contacts_updated": sum(len(set(b)) - 1 for b in contacts.values()),
        "requests": dict(Counter(f"{r.method} {r.route or r.path}" for r in fake.requests)),
        "statuses": dict(Counter(str(r.status) for r in fake.requests)),
        "over_limit": dict(Counter(r.family for r in fake.requests if r.over_limit)),
        "spec_violations": len(fake.spec_violations),
        "first": min((r.time for r in ok), default=None),
        "last": max((r.time for r in ok), default=None),
    }


class Fake:
    def __init__(self, tmp: Path, scale: float) -> None:
        self.port_file, self.out = tmp / "fake.port", tmp / "fake.json"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "fake", str(self.port_file), str(self.out), str(scale)],
            cwd=ROOT,
        )
        deadline = time.monotonic() + 60
        while not (self.port_file.exists() and self.port_file.read_text().endswith("\n")):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the Brevo fake did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port_file.read_text().strip()}/v3"

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)
        audit: dict[str, Any] = json.loads(self.out.read_text())
        return audit


# -- the replicas -------------------------------------------------------------------------


def takeover_key() -> str | None:
    """The replicas' liveness key, when this agent has it (another change adds it)."""
    return "replica_timeout" if "replica_timeout" in AgentSection.model_fields else None


class Replica:
    def __init__(self, tmp: Path, i: int, tokens: dict[str, str], args: argparse.Namespace,
                 store: str | None, fake_url: str) -> None:  # fmt: skip
        self.name = f"r{i}"
        self.stream_port, self.http_port = free_port(), free_port()
        self.state = tmp / self.name
        agent: dict[str, Any] = {
            "listen": {
                "stream": f"127.0.0.1:{self.stream_port}",
                "http": f"127.0.0.1:{self.http_port}",
            },
            "state_dir": str(self.state),
            "log_level": "warning",
            "replica": self.name,
        }
        if store is not None:
            agent["store"] = store
            if takeover_key():
                agent[str(takeover_key())] = f"{args.replica_timeout:g}s"
        data = {
            "agent": agent,
            "brevo": {
                "dry_run": False,
                "base_url": fake_url,
                "api_key": BREVO_FAKE_KEY,
                "rate_limits": scaled_limits(args.time_scale),
                "live_window": f"{5000 / args.time_scale:.3f}ms",
                "max_backoff": "2s",
            },
            "sites": [
                {"id": sid, "token_sha256": token_hash(tok), "brevo_id_prefix": f"{sid}-"}
                for sid, tok in tokens.items()
            ],
        }
        self.config = tmp / f"{self.name}.yaml"
        self.config.write_text(yaml.safe_dump(data))
        self.log = tmp / f"{self.name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        import aiohttp

        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent.cli", "run", "--config", str(self.config),
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        async with asyncio.timeout(120), aiohttp.ClientSession() as s:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with s.get(f"http://127.0.0.1:{self.http_port}/healthz") as r:
                        if r.status == 200:
                            return
                if self.proc.returncode is not None:
                    raise RuntimeError(f"{self.name} did not start: {self.log.read_text()[-2000:]}")
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the doors process and its worker at once."""
        assert self.proc is not None
        for p in tree(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            async with asyncio.timeout(60):
                await self.proc.wait()
        except TimeoutError:
            self.kill()
            await self.proc.wait()


# -- the load -----------------------------------------------------------------------------


class Load:
    """Every site's websocket, site k on replica k mod N, `window` batches in flight; a site
    whose replica died connects to another live one and sends its unacked batches again."""

    def __init__(self, replicas: list[Replica], tokens: dict[str, str], batches: int,
                 window: int) -> None:  # fmt: skip
        self.replicas, self.tokens = replicas, tokens
        self.batches, self.window = batches, window
        self.live = list(range(len(replicas)))
        self.acked = 0
        self.sent_batches = 0
        self.last_ack = 0.0
        self.reconnected: dict[str, float] = {}  # site → when it was connected again
        self.killed_at: float | None = None
        self.acks_seen = asyncio.Event()

    async def run(self) -> None:
        await asyncio.gather(*(self._site(k, sid) for k, sid in enumerate(self.tokens)))

    async def _site(self, k: int, sid: str) -> None:
        todo = deque(range(self.batches))
        choice = k
        while todo:
            replica = self.live[choice % len(self.live)]
            try:
                ws = await open_site(self.replicas[replica].stream_port, self.tokens[sid])
            except (OSError, InvalidHandshake, TimeoutError, AssertionError, ConnectionClosed):
                choice += 1
                await asyncio.sleep(0.05)
                continue
            if self.killed_at is not None and replica != k % len(self.replicas):
                self.reconnected.setdefault(sid, time.monotonic())
            inflight: dict[str, int] = {}
            try:
                await self._session(ws, sid, todo, inflight)
            except ConnectionClosed:
                todo.extendleft(sorted(inflight.values(), reverse=True))
                choice += 1
            finally:
                await ws.close()

    async def _session(self, ws: Any, sid: str, todo: deque[int], inflight: dict[str, int]) -> None:
        slots = asyncio.Semaphore(self.window)

        async def reader() -> None:
            while inflight or todo:
                msg = json.loads(await ws.recv())
                if msg.get("type") != "ack" or msg.get("batch") not in inflight:
                    continue  # heartbeats' answers and the like
                del inflight[msg["batch"]]
                self.acked += len(msg["accepted"]) + len(msg["rejected"])
                self.last_ack = time.monotonic()
                self.acks_seen.set()
                slots.release()

        reading = asyncio.create_task(reader())
        try:
            while todo:
                acquire = asyncio.ensure_future(slots.acquire())
                done, _ = await asyncio.wait({acquire, reading}, return_when="FIRST_COMPLETED")
                if reading in done:
                    acquire.cancel()
                    break
                b = todo.popleft()
                name = f"{sid}-b{b}"
                inflight[name] = b
                await ws.send(batch_message(name, b * SIZE, SIZE, sid))
                self.sent_batches += 1
            await reading
        finally:
            reading.cancel()


# -- one run ------------------------------------------------------------------------------


def backlog(store: str | None, sqlite_file: Path) -> tuple[int, int]:
    """(events not processed, jobs not done) in the store."""
    sql = "SELECT (SELECT COUNT(*) FROM inbox WHERE state=0), (SELECT COUNT(*) FROM jobs)"
    if store is None:
        with contextlib.closing(sqlite3.connect(f"file:{sqlite_file}?mode=ro", uri=True)) as db:
            row = db.execute(sql).fetchone()
    else:
        with psycopg.connect(store) as db:
            row = db.execute(sql.encode()).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def stored_events(store: str | None, sqlite_file: Path) -> tuple[int, int]:
    """(inbox rows, distinct (site, event id)) in the store."""
    sql = "SELECT COUNT(*), COUNT(DISTINCT site || '/' || event_id) FROM inbox"
    if store is None:
        with contextlib.closing(sqlite3.connect(f"file:{sqlite_file}?mode=ro", uri=True)) as db:
            row = db.execute(sql).fetchone()
    else:
        with psycopg.connect(store) as db:
            row = db.execute(sql.encode()).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def claimed_by(store: str, name: str) -> int:
    with psycopg.connect(store) as db:
        row = db.execute(
            b"SELECT COUNT(*) FROM jobs WHERE state=1 AND claimed_by=%s", (name,)
        ).fetchone()
    return int(row[0]) if row else 0


def claimed_orders(store: str, name: str) -> list[str]:
    """The Brevo order ids of the order jobs `name` holds in flight."""
    with psycopg.connect(store) as db:
        rows = db.execute(
            b"SELECT key FROM jobs WHERE state=1 AND claimed_by=%s AND kind='order'", (name,)
        ).fetchall()
    return [str(r[0]).removeprefix("order:") for r in rows]


async def drained(store: str | None, sqlite_file: Path, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            if backlog(store, sqlite_file) == (0, 0):
                return True
        except (sqlite3.Error, psycopg.Error):
            pass  # the file or a table not there yet
        await asyncio.sleep(0.25)
    return False


async def killer(load: Load, replicas: list[Replica], store: str, total: int) -> dict[str, Any]:
    """At 30 % of the events acked, once it holds claims, SIGKILL r1; then time its sites'
    reconnection and the takeover of its claims."""
    while load.acked < 0.3 * total:
        load.acks_seen.clear()
        await load.acks_seen.wait()
    victim = replicas[1]
    # ...and once it holds Brevo jobs in flight, so that there is something to take over.
    in_flight = 0
    for _ in range(2400):  # up to 2 minutes
        in_flight = claimed_by(store, victim.name)
        if in_flight:
            break
        await asyncio.sleep(0.05)
    load.live.remove(1)  # the balancer's health check took it out
    t_kill = time.monotonic()
    load.killed_at = t_kill
    victim.kill()
    out: dict[str, Any] = {
        "killed_at_events_acked": load.acked,
        "its_claims_at_kill": in_flight,
        "load_running": load.acked < total,
        # Dead, it holds them until taken over: the orders it may have sent and not recorded.
        "its_orders_in_flight": claimed_orders(store, victim.name),
    }
    peak = in_flight
    taken_at = None
    while time.monotonic() - t_kill < 600:
        left = claimed_by(store, victim.name)
        peak = max(peak, left)
        if left == 0 and taken_at is None:
            taken_at = time.monotonic()
            break
        await asyncio.sleep(0.25)
    out["its_claims_peak_after_kill"] = peak
    out["claims_taken_over_s"] = None if taken_at is None else round(taken_at - t_kill, 2)
    return out


async def one_run(args: argparse.Namespace, admin: str | None, n: int, batches: int,
                  kill: bool, pg_pid: int | None) -> dict[str, Any]:  # fmt: skip
    tokens = {f"s{i}": new_token() for i in range(args.sites)}
    total = args.sites * batches * SIZE
    with tempfile.TemporaryDirectory() as tmp_s, contextlib.ExitStack() as stack:
        tmp = Path(tmp_s)
        store = None if admin is None else stack.enter_context(pgserver.fresh_database(admin))
        fake = Fake(tmp, args.time_scale)
        replicas = [Replica(tmp, i, tokens, args, store, fake.url) for i in range(n)]
        sqlite_file = replicas[0].state / "woobrevo.sqlite3"
        out: dict[str, Any] = {"store": "sqlite" if store is None else "postgresql",
                               "replicas": n, "events": total}  # fmt: skip
        try:
            await asyncio.gather(*(r.start() for r in replicas))
            pids = [r.proc.pid for r in replicas if r.proc]
            cpu = Cpu({"replicas": pids, "postgres": [pg_pid] if pg_pid else [],
                       "load": [os.getpid()], "fake": [fake.proc.pid]})  # fmt: skip
            load = Load(replicas, tokens, batches, args.window)
            c0 = cpu.sample()
            t0 = c0["t"]
            kill_task = (
                asyncio.create_task(killer(load, replicas, store, total))
                if kill and store
                else None
            )
            async with asyncio.timeout(args.timeout):
                await load.run()
            c1 = cpu.sample()
            ok = await drained(store, sqlite_file, time.monotonic() + args.timeout)
            c2 = cpu.sample()
            if kill_task is not None:
                out["kill"] = await kill_task
                out["kill"]["sites_reconnected_s"] = round(
                    max(load.reconnected.values(), default=t0) - (load.killed_at or t0), 2
                )
                out["kill"]["sites_moved"] = len(load.reconnected)
            rows, distinct = stored_events(store, sqlite_file)
        finally:
            await asyncio.gather(*(r.stop() for r in replicas))
            audit = fake.stop()
            for r in replicas:  # a replica's complaints, for the report
                text = r.log.read_text(errors="replace").strip()
                if text:
                    out.setdefault("logs", {})[r.name] = text[-1500:]
                if trouble := heartbeat_trouble(text):
                    out.setdefault("heartbeats", {})[r.name] = trouble
        out.update(
            acked=load.acked,
            batches_sent=load.sent_batches,  # above events/100: batches sent again elsewhere
            events_per_s=round(load.acked / (load.last_ack - t0)),
            load_s=round(load.last_ack - t0, 2),
            drained=ok,
            drain_s=round((audit["last"] or t0) - t0, 2),
            drain_after_load_s=round((audit["last"] or t0) - load.last_ack, 2),
            cpu_load=Cpu.since(c0, c1),
            cpu_drain=Cpu.since(c1, c2),
            audit={
                "events_stored": distinct,
                "events_lost": total - distinct,
                "events_doubled": rows - distinct,
                "orders_written": audit["orders_written"],
                "orders_lost": total - audit["orders_written"],
                "orders_doubled": audit["orders_doubled"],
                "contacts": audit["contacts"],
                "contacts_doubled": audit["contacts_doubled"],
                "contacts_updated": audit["contacts_updated"],
                "requests": audit["requests"],
                "statuses": audit["statuses"],
                "over_limit": audit["over_limit"],
                "spec_violations": audit["spec_violations"],
                "doubled_sample": audit["doubled_sample"],
            },
        )
        if "kill" in out:  # a kill -9 may double what the dead replica sent and never recorded
            in_flight = set(out["kill"].pop("its_orders_in_flight"))
            beyond = set(audit["doubled_ids"]) - in_flight
            out["audit"]["orders_doubled_beyond_killed_in_flight"] = len(beyond)
        a = out["audit"]
        doubles = ("events_lost", "events_doubled", "orders_lost", "orders_doubled")
        if any(a[k] for k in (*doubles, "contacts_doubled")):
            out["logs_kept"] = str(keep_logs(replicas, out))
        return out


# What a replica logs when its heartbeat was late, lapsed or failed, when another replica was
# away too long, and when it did not send what it claimed (agent/store/postgres/cluster.py,
# agent/forward/forwarder.py `_fence`).
HEARTBEAT_LINES = {
    "late": "s late (this process",
    "lapsed": "its heartbeat lapsed",
    "failed": "heartbeat failed",
    "not_seen": "was not seen for",
    "fenced": "claimed before this replica's heartbeat lapsed",
}


def heartbeat_trouble(log: str) -> dict[str, int]:
    """How many lines of each kind of HEARTBEAT_LINES a replica's log holds (none: {})."""
    counts = {k: log.count(v) for k, v in HEARTBEAT_LINES.items()}
    return {k: n for k, n in counts.items() if n}


def keep_logs(replicas: list[Replica], out: dict[str, Any]) -> Path:
    """A run that lost or doubled something: its replicas' whole logs, kept past the run's
    temporary folder (the summary keeps only their last lines)."""
    kept = Path(tempfile.mkdtemp(prefix=f"woobrevo-replicas-{out['store']}-x{out['replicas']}-"))
    for r in replicas:
        if r.log.exists():
            shutil.copy(r.log, kept / r.log.name)
    return kept


def summary_line(r: dict[str, Any]) -> str:
    a = r["audit"]
    return (
        f"{r['store']:>10} ×{r['replicas']}: {r['events_per_s']:>6} events/s acked "
        f"({r['load_s']} s), drain {r['drain_s']} s (+{r['drain_after_load_s']} s after the "
        f"last ack), lost {a['events_lost']}/{a['orders_lost']}, doubled "
        f"{a['events_doubled']}/{a['orders_doubled']} (events/orders), contacts doubled "
        f"{a['contacts_doubled']} (updated {a['contacts_updated']}); cpu load {r['cpu_load']}"
        f" drain {r['cpu_drain']}; requests {a['requests']} statuses {a['statuses']} over limit"
        f" {a['over_limit']}" + (f"; heartbeats {r['heartbeats']}" if r.get("heartbeats") else "")
    )


def tree_facts() -> dict[str, Any]:
    """What was measured: the commit, and the agent's files changed since (others' work)."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    changed = subprocess.run(
        [*git, "status", "--short", "agent"], capture_output=True, text=True, check=False
    )
    return {"commit": head.stdout.strip(), "changed": changed.stdout.split("\n")[:-1]}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": machine(), "args": vars(args), "runs": []}
    out["takeover_key"] = takeover_key() or "none (claim lease 120 s)"
    out["tree"] = tree_facts()
    counts = [int(x) for x in args.replicas.split(",")]
    with postgres() as (admin, pg_pid):
        out["postgres"] = pg_facts(admin)
        print(json.dumps({k: out[k] for k in ("machine", "postgres", "takeover_key", "tree")}),
              file=sys.stderr)  # fmt: skip
        for rep in range(args.repeat):
            for n in [0, *counts]:  # 0: one agent on SQLite
                res = await one_run(args, None if n == 0 else admin, max(n, 1), args.batches,
                                    False, pg_pid)  # fmt: skip
                res["repetition"] = rep + 1
                out["runs"].append(res)
                print(summary_line(res), file=sys.stderr)
        if not args.no_kill:
            res = await one_run(args, admin, 3, args.kill_batches, True, pg_pid)
            out["kill_run"] = res
            print(summary_line(res), json.dumps(res.get("kill")), file=sys.stderr)
    return out


if __name__ == "__main__" and sys.argv[1:2] == ["fake"]:
    asyncio.run(serve_fake(Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])))
elif __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=200)
    parser.add_argument("--batches", type=int, default=3, help="100-event batches per site")
    parser.add_argument("--window", type=int, default=2, help="batches in flight per site")
    parser.add_argument("--replicas", default="1,2,3", help="PostgreSQL replica counts")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kill-batches", type=int, default=8)
    parser.add_argument("--no-kill", action="store_true")
    parser.add_argument("--replica-timeout", type=float, default=5.0)
    parser.add_argument(
        "--time-scale", type=float, default=3600.0, help="divides Brevo's rate-limit windows"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="per phase, seconds")
    parser.add_argument("--json", type=Path, help="write the results here too")
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    result["machine"]["loadavg_1m_end"] = os.getloadavg()[0]
    text = json.dumps(result, indent=2, default=str)
    if arguments.json:
        arguments.json.write_text(text)
    print(text)
