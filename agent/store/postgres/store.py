"""`PostgresStore`: the store's ports on a PostgreSQL database (issue 17).

Done so far, with the same tests as the SQLite store (tests/agent/test_store_backends.py):
`MetaStore`, `Ingest`, `SiteState` and `Status` (health included); the forwarder's, the
operator's, the consent and the privacy ports (`JobQueue`, `DeadLetters`, `ConsentStore`,
`Holdings`, tests/agent/test_store_jobs_backends.py); the processor's (`InboxQueue`,
`CartTimers`, `CartFigures`: processing.py, carts.py, tests/agent/test_pg_processing.py). The
config selects it with `agent.store: postgresql://…` (agent/store/open.py, docs/postgresql.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.store.postgres.budgets import BudgetsMixin
from agent.store.postgres.carts import CartFiguresMixin
from agent.store.postgres.cluster import ClusterMixin
from agent.store.postgres.consent import ConsentMixin
from agent.store.postgres.deadletters import DeadLettersMixin
from agent.store.postgres.inbox import InboxMixin
from agent.store.postgres.jobs import JobsMixin
from agent.store.postgres.meta import MetaMixin
from agent.store.postgres.privacy import PrivacyMixin
from agent.store.postgres.processing import ProcessingMixin

if TYPE_CHECKING:
    from agent.store.ports import (
        CartFigures,
        CartTimers,
        ConsentStore,
        DeadLetters,
        Holdings,
        InboxQueue,
        Ingest,
        JobQueue,
        MetaStore,
        SharedBudgets,
        SiteState,
        Status,
    )

__all__ = ["PostgresStore"]


class PostgresStore(
    ProcessingMixin,
    CartFiguresMixin,
    InboxMixin,
    ClusterMixin,
    JobsMixin,
    PrivacyMixin,
    ConsentMixin,
    MetaMixin,
    DeadLettersMixin,
    BudgetsMixin,
):
    """Use as `async with PostgresStore(dsn) as store:` (base.py `PgBase` for the arguments)."""


if TYPE_CHECKING:

    def _implements_every_port(
        store: PostgresStore,
    ) -> tuple[
        Ingest,
        SiteState,
        MetaStore,
        Status,
        JobQueue,
        ConsentStore,
        Holdings,
        DeadLetters,
        InboxQueue,
        CartTimers,
        CartFigures,
        SharedBudgets,
    ]:
        """mypy fails here when the store stops satisfying one of the ports it implements."""
        return store, store, store, store, store, store, store, store, store, store, store, store
