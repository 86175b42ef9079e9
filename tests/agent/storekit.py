"""Jobs queued on the test's store, whichever backend it is (tests/agent/conftest.py
`open_store`), as the pipeline leaves them: for the tests of claims and their outcomes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tests.agent.storesql import write

__all__ = ["add_contact_jobs", "add_job"]


async def add_job(
    store: Any, account: str, site: str, kind: str, key: str, body: dict[str, Any]
) -> None:
    """Queue one job."""
    await write(
        store,
        "INSERT INTO jobs (account, site, kind, key, body, created_at) VALUES (?, ?, ?, ?, ?, 0)",
        account,
        site,
        kind,
        key,
        json.dumps(body),
    )


async def add_contact_jobs(
    store: Any, account: str, contacts: Sequence[tuple[str, Sequence[int]]]
) -> None:
    """Queue contact jobs (email, lists), oldest first, on site `s1`."""
    for email, lists in contacts:
        body: dict[str, Any] = {"email": email, "attributes": {"FIRSTNAME": "A"}}
        if lists:
            body["listIds"] = list(lists)
        await add_job(store, account, "s1", "contact", f"contact:{email}", body)
