"""A PostgreSQL address as the agent shows it: the password never leaves this module.

The DSN (`postgresql://user:password@host/db` or `host=… password=…`) is a secret as a
whole: every log line, /status field, error message and exception text names the database
by `shown(dsn)`, and text from the driver goes through `masked(text, dsn)` first.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import psycopg.conninfo

__all__ = ["is_postgres", "masked", "password", "shown"]

MASK = "***"
# The URL schemes libpq takes (postgresql.org/docs/current/libpq-connect.html, 34.1.1.2).
SCHEMES = ("postgresql://", "postgres://")


def is_postgres(address: str) -> bool:
    """Whether a store address names a PostgreSQL database (else it is a SQLite file)."""
    return address.strip().lower().startswith(SCHEMES)


def password(dsn: str) -> str | None:
    """The DSN's password (to mask it in log lines, agent/logs.py `protect`), or None."""
    try:
        value = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:  # unparsable: the URL's own field, if any
        try:
            value = urlsplit(dsn).password
        except ValueError:
            return None
    return None if value in (None, "") else str(value)


def shown(dsn: str) -> str:
    """The DSN without its password (and without any `password=` pair), fit for a log line."""
    text = re.sub(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", rf"\g<1>{MASK}", dsn)
    try:
        parts = urlsplit(text)
    except ValueError:
        return masked(text, dsn)
    if parts.password is not None:
        user = parts.username or ""
        host = parts.netloc.rsplit("@", 1)[1]
        text = parts._replace(netloc=f"{user}:{MASK}@{host}").geturl()
    return masked(text, dsn)


def masked(text: str, dsn: str) -> str:
    """`text` (a driver's message) with the DSN's password replaced wherever it appears."""
    secret = password(dsn)
    if secret:
        text = text.replace(secret, MASK)
    return text
