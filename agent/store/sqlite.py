"""The SQLite backend: one file in WAL mode, owned by one thread, behind the store's ports.

`SqliteStore` is the one public class; each concern is a module of this package:

- schema.py: the tables, opening the file (WAL, `synchronous=FULL`), recovery after a crash;
- tx.py: the connection's thread, write transactions shared by two processes, group commits;
- inbox.py (with chunk.py): ingest, processing into jobs, pruning;
- jobs.py: claim, complete, retry, dead-letter a job;
- deadletters.py: list, retry, drop kept failures;
- meta.py: keyed values, watermarks, object versions, /status counters;
- carts.py: cart timers (the carts that came due fire, once) and the carts' figures;
- consent.py: consent records and suppressions (the `ConsentStore` port);
- privacy.py: an erasure's purge once Brevo answered, and what an exporter is shown;
- rows.py: rows more than one of them writes.

The rules these apply (coalescing, what Brevo already holds, which jobs a claim may take, an
order's fact and its buyer's aggregates) are the core's: agent/core/dedupe.py and
agent/core/aggregates.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.store.carts import CartsMixin
from agent.store.consent import ConsentMixin
from agent.store.deadletters import DeadLettersMixin
from agent.store.inbox import InboxMixin
from agent.store.jobs import JobsMixin
from agent.store.privacy import PrivacyMixin

if TYPE_CHECKING:
    from agent.store.ports import (
        CartFigures,
        CartTimers,
        ConsentStore,
        DeadLetters,
        InboxQueue,
        Ingest,
        JobQueue,
        MetaStore,
        SiteState,
        Status,
    )

__all__ = ["SqliteStore"]


class SqliteStore(InboxMixin, JobsMixin, DeadLettersMixin, PrivacyMixin, CartsMixin, ConsentMixin):
    """The embedded store. Use as `async with SqliteStore(path) as store:`.

    `SqliteStore(path, *, recover=True, writes="plain", held_sites=())`: see tx.py
    `StoreBase` for what each argument does.
    """


if TYPE_CHECKING:

    def _implements_every_port(
        store: SqliteStore,
    ) -> tuple[
        Ingest,
        SiteState,
        InboxQueue,
        JobQueue,
        DeadLetters,
        MetaStore,
        Status,
        CartTimers,
        CartFigures,
        ConsentStore,
    ]:
        """mypy fails here when the store stops satisfying one of its ports."""
        return store, store, store, store, store, store, store, store, store, store
