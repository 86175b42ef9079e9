"""A PostgreSQL for the tests: the one `WOOBREVO_TEST_PG` names (a DSN whose user may create
databases), else a private server of Debian's `postgresql` package (bin/system-packages
installs it) started for the session: `initdb` into a temp folder, listening only on a unix
socket in that folder, stopped and removed at the session's end. Each test gets a database
of its own, dropped afterwards.

On a fresh Debian machine, as root: the server runs as the `postgres` user the package made
(PostgreSQL refuses root), in a folder that user can reach (under /tmp when $TMPDIR is not), with
the C locale (whatever $LANG names need not be generated), and beside the system cluster the
package may have started on port 5432 (ours listens on no TCP port, only on its own socket).

`WOOBREVO_TEST_PG=off` deselects the PostgreSQL cases; otherwise a server that cannot be
started FAILS them, with why (CI must not silently lose them).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import psycopg.conninfo

from agent.store.postgres.dsn import shown

ENV = "WOOBREVO_TEST_PG"
# Where Debian's packages put the server's programs (not on PATH: postgresql-common wraps them).
DEBIAN_BINS = Path("/usr/lib/postgresql")
PORT = 5432  # only in the socket's name: the private server listens on no TCP port
# A unix socket's path holds at most 107 bytes (sun_path), `/.s.PGSQL.5432` included.
SOCKET_PATH_MAX = 107

_names = itertools.count(1)


class NoServer(RuntimeError):
    """No PostgreSQL could be started for the tests; the message says why and what to do."""


def disabled() -> bool:
    """Whether the PostgreSQL cases are switched off (`WOOBREVO_TEST_PG=off`)."""
    return os.environ.get(ENV, "").strip().lower() == "off"


def _bin(name: str) -> str:
    """A server program, of the newest Debian version that has the server (`initdb`), so that
    `initdb` and `pg_ctl` are of one version; else from PATH."""
    versions = sorted(
        (p.parent for p in DEBIAN_BINS.glob("*/bin/initdb") if p.parent.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
    )
    if versions and (versions[-1] / name).exists():
        return str(versions[-1] / name)
    found = shutil.which(name)
    if found is None:
        raise NoServer(
            f"no PostgreSQL server programs ({name}) in {DEBIAN_BINS}/<version>/bin nor on"
            " PATH: run bin/system-packages (it installs Debian's postgresql), or set"
            f" {ENV} to a server's DSN, or {ENV}=off to leave the PostgreSQL cases out"
        )
    return found


def _as_server_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its programs as `postgres`."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise NoServer(
            "running as root and no `postgres` user to run the server as (Debian's postgresql"
            " package makes it: run bin/system-packages), or set"
            f" {ENV} to a server's DSN, or {ENV}=off"
        ) from None
    if shutil.which("runuser") is None:
        raise NoServer("running as root and no `runuser` (util-linux) to run the server with")
    return ["runuser", "-u", "postgres", "--"]


def _reachable(folder: Path) -> bool:
    """Whether another user (`postgres`, when root runs the tests) can reach `folder`: every
    folder on its path searchable by others."""
    for part in [folder, *folder.parents]:
        try:
            if not part.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _base(as_other_user: bool) -> str:
    """Where the server's folder goes: the temp folder, unless the server's user cannot reach
    it or the socket's path would be too long there; then /tmp."""
    base = Path(tempfile.gettempdir())
    too_long = len(f"{base}/woobrevo-pg-XXXXXXXX/.s.PGSQL.{PORT}") > SOCKET_PATH_MAX
    if too_long or (as_other_user and not _reachable(base)):
        return "/tmp"
    return str(base)


def _run(cmd: list[str], what: str, cwd: Path, log: Path | None = None) -> None:
    """Run a server program (from `cwd`: the `postgres` user may not read the tests' folder)
    in the C locale, without the caller's libpq settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LC_", "LANG"))}
    env.update(LC_ALL="C", LANG="C")
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, check=False, cwd=cwd, env=env
    )
    if done.returncode != 0:
        said = done.stderr.strip() or done.stdout.strip()
        if log is not None and log.exists():
            said += f"\n{log}:\n" + log.read_text(errors="replace")[-2000:]
        raise NoServer(f"{what} failed ({done.returncode}): {said[-3000:]}")


@contextlib.contextmanager
def private_server() -> Iterator[str]:
    """A private PostgreSQL for the session; yields the DSN of its `postgres` database."""
    runas = _as_server_user()
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    folder = Path(tempfile.mkdtemp(prefix="woobrevo-pg-", dir=_base(bool(runas))))
    data = folder / "data"
    if runas:
        info = pwd.getpwnam("postgres")
        os.chown(folder, info.pw_uid, info.pw_gid)
    started = False
    try:
        # The C locale: the one every machine has (a $LANG naming a locale not generated
        # makes initdb fail); UTF8, the encoding the store's text needs.
        _run(
            [*runas, initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--locale=C", "--no-sync"],
            "initdb",
            folder,
        )  # fmt: skip
        # No TCP (the system cluster may hold 5432); fsync off (a test server); dynamic
        # shared memory in the data folder, not /dev/shm (64 MB in a container by default).
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{folder}' -p {PORT}"
            " -c fsync=off -c max_connections=200 -c dynamic_shared_memory_type=mmap"
        )
        _run(
            [*runas, pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-o", options,
             "-w", "-t", "60", "start"],
            "pg_ctl start",
            folder,
            folder / "log",
        )  # fmt: skip
        started = True
        yield f"postgresql://postgres@/postgres?host={folder}&port={PORT}"
    finally:
        if started:
            subprocess.run(
                [*runas, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
                cwd=folder,
            )
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def server() -> Iterator[str]:
    """The DSN of the tests' server: `WOOBREVO_TEST_PG`'s, else a private one's."""
    given = os.environ.get(ENV, "").strip()
    if given:
        yield given
        return
    with private_server() as dsn:
        yield dsn


def _url(parts: dict[str, object]) -> str:
    """libpq's key=value pairs as a postgresql:// URL (the form `agent.store` takes)."""
    user = quote(str(parts.pop("user", "")), safe="")
    secret = parts.pop("password", None)
    auth = f"{user}:{quote(str(secret), safe='')}@" if secret else f"{user}@" if user else ""
    host = parts.pop("host", "")
    port = parts.pop("port", "")
    name = quote(str(parts.pop("dbname", "")), safe="")
    netloc = "" if str(host).startswith("/") else f"{host}{':' if port else ''}{port}"
    query = {k: str(v) for k, v in parts.items()}
    if str(host).startswith("/"):
        query.update(host=str(host), port=str(port or PORT))
    tail = f"?{urlencode(query)}" if query else ""
    return f"postgresql://{auth}{netloc}/{name}{tail}"


@contextlib.contextmanager
def fresh_database(admin: str) -> Iterator[str]:
    """A new empty database on the server `admin` connects to; yields its DSN, drops it after."""
    name = f"woobrevo_test_{os.getpid()}_{next(_names)}"
    try:
        with psycopg.connect(admin, autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}" TEMPLATE template0'.encode())
    except psycopg.Error as exc:
        raise NoServer(
            f"cannot create a test database on {shown(admin)} ({exc}): check {ENV}"
            " (a DSN whose user may CREATE DATABASE), or unset it for a private server"
        ) from None
    try:
        yield _url(
            psycopg.conninfo.conninfo_to_dict(psycopg.conninfo.make_conninfo(admin, dbname=name))
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
