"""The store's narrow ports: what each stage of the data path may ask of the store.

A door only ingests; the processor reads the inbox queue; the forwarder works the job queue;
operator tools and the token registry read and write small keyed values. Each takes the
Protocol it uses in its constructor, so a second backend (issue 17: PostgreSQL) implements
these and nothing else. `SqliteStore` (agent/store/sqlite.py) implements all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agent.core.aggregates import OrderFact
from agent.core.carts import Cart, CartOutcome
from agent.core.consent import ConsentRecord, ConsentView
from agent.core.events import Event, Rejection
from agent.core.jobs import Job, Kind, Outcome
from agent.core.pipeline import Aggregates
from agent.core.planner import Budget
from agent.core.privacy import Erasure

__all__ = [
    "CartFigures",
    "CartFire",
    "CartStep",
    "CartTimers",
    "ConsentStore",
    "DeadLetter",
    "DeadLetters",
    "Decide",
    "ErasureStep",
    "Holdings",
    "InboxQueue",
    "Ingest",
    "IngestResult",
    "JobQueue",
    "MetaStore",
    "SharedBudgets",
    "SiteState",
    "Status",
]

# The pure pipeline as the store calls it: (site, event, prior state, aggregates) → outcome
# (agent/core/pipeline.py `decide`, wrapped by agent/process/processor.py).
# The consent view (agent/core/consent.py) reads the records and suppressions as the event's
# transaction sees them.
Decide = Callable[[str, Event, dict[str, Any] | None, Aggregates, ConsentView], Outcome]


# The cart state machine as the store calls it (agent/core/carts.py `CartSite`, with the
# processor's clock): a cart event with the cart as kept, or an order with its buyer's open
# carts → what to keep and send; None for a site no longer in the config.
CartStep = Callable[[str, Event, Sequence[Cart]], CartOutcome | None]
# A cart whose timer came due → its outcome (None: the site is no longer in the config).
CartFire = Callable[[str, Cart], CartOutcome | None]
# A stored `privacy.erase` → its erasure (agent/core/privacy.py `erasure_of`, with the site's
# rules); None for a site no longer in the config.
ErasureStep = Callable[[str, Event], Erasure | None]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What `ingest` did: ids now safely stored (new or replayed) and rejected ones."""

    accepted: list[str]
    rejected: list[Rejection]
    new: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A kept failure: an unusable event or a write Brevo refused."""

    id: int
    site: str
    origin: str
    ref: str
    kind: str
    account: str | None
    code: str
    message: str
    body: Any
    created_at: float
    state: str


class MetaStore(Protocol):
    """Small keyed values: tokens, caches of Brevo ids, backfill checkpoints, readiness."""

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...

    async def meta_items(self, prefix: str) -> dict[str, str]: ...


class Ingest(Protocol):
    """A door's port: store a batch durably (one transaction), then the door acks."""

    ingested: asyncio.Event

    async def ingest(
        self,
        site: str,
        events: Sequence[Event],
        rejected: Sequence[tuple[Rejection, object]] = (),
    ) -> IngestResult: ...


class SiteState(MetaStore, Ingest, Protocol):
    """The poller's and backfill's port: ingest, plus per-site watermarks and what the pipeline
    has seen of each object (to compare with the store's listings)."""

    async def get_watermark(self, site: str, name: str) -> str | None: ...

    async def set_watermark(self, site: str, name: str, value: str) -> None: ...

    async def object_versions(
        self, site: str, resource: str
    ) -> dict[int, tuple[str, bool, str | None]]: ...

    async def last_received(self, site: str, door: str) -> float | None: ...


class CartTimers(Protocol):
    """The processor's timer pass: the carts that came due fire, in due order, each with its
    Brevo jobs in the transaction that moves it on (a restart loses none, fires none twice)."""

    async def fire_due_carts(self, now: float, fire: CartFire, *, limit: int = ...) -> int: ...

    async def next_cart_due(self) -> float | None: ...


class CartFigures(Protocol):
    """The stream door's read for each `welcome`: one site's cart figures as /status has them
    (`active`, `abandoned`, `recovered`, `expired`, `converted`, `emptied`,
    `recovered_revenue`, `recovery_rate`), for the plugin's status panel."""

    async def cart_figures(self, site: str) -> dict[str, float | None]: ...


class InboxQueue(CartTimers, Protocol):
    """The processor's port: new inbox rows in order, through the pure pipeline, into jobs;
    and the cart timers that came due."""

    ingested: asyncio.Event

    async def process_pending(
        self,
        limit: int,
        decide: Decide,
        facts: Callable[[str, Event], OrderFact | None],
        *,
        carts: CartStep | None = None,
        privacy: ErasureStep | None = None,
    ) -> int: ...

    async def prune_inbox(self, before: float, *, batch: int = ...) -> int: ...


class ConsentStore(Protocol):
    """Consent records and suppressions per (Brevo account, email) (agent/store/consent.py):
    the Brevo webhook door and backfill suppress, a Brevo `listAddition` lifts, the forwarder
    reads the suppressions at send time. Emails are normalized (agent.core.normalize)."""

    async def suppress(
        self, account: str, email: str, list_ids: Sequence[int], reason: str, since: float
    ) -> None: ...

    async def lift(self, account: str, email: str, list_ids: Sequence[int]) -> None: ...

    async def suppressed(
        self, account: str, emails: Collection[str]
    ) -> dict[str, frozenset[int]]: ...

    async def consent_of(self, account: str, email: str) -> ConsentRecord | None: ...


class JobQueue(MetaStore, Protocol):
    """The forwarder's port: claim due jobs, then complete, retry or dead-letter them."""

    async def pending_count(self, account: str, kind: Kind, now: float) -> int: ...

    async def next_due(self, account: str, kind: Kind) -> float | None: ...

    async def claim(
        self,
        account: str,
        kind: Kind,
        limit: int,
        now: float,
        *,
        single: bool | None = None,
        by_lists: bool = False,
    ) -> list[Job]: ...

    async def unclaim(self, account: str) -> None: ...

    def holds_claims(self, claimed_at: float) -> bool:
        """Whether jobs claimed at monotonic time `claimed_at` are still this process's to
        send: always on SQLite; on PostgreSQL while its heartbeat vouches for them without a
        gap since (agent/store/postgres/cluster.py, the fence)."""
        ...

    async def complete(self, jobs: Iterable[Job]) -> None: ...

    async def retry(
        self,
        jobs: Iterable[Job],
        not_before: float,
        error: str,
        *,
        single_only: bool = False,
        count_attempt: bool = True,
    ) -> None: ...

    async def dead_letter(self, job: Job, code: str, message: str) -> None: ...

    async def erasure_finished(self, job: Job, refused: tuple[str, str] | None = None) -> None: ...


class Holdings(Protocol):
    """The stream door's read for an `export` frame: what the store holds about an email on a
    Brevo account's sites (agent/core/privacy.py `export_groups` names the groups)."""

    async def holdings(
        self, account: str, sites: Sequence[str], email: str
    ) -> dict[str, list[dict[str, Any]]]: ...


class DeadLetters(Protocol):
    """The operator's port (`deadletters list | retry | drop`)."""

    async def dead_letters(
        self, state: str = "open", site: str | None = None
    ) -> list[DeadLetter]: ...

    async def retry_dead_letters(
        self, ids: Sequence[int] | None, reparse: Callable[[Any], Event | None]
    ) -> tuple[int, list[str]]: ...

    async def drop_dead_letters(self, ids: Sequence[int] | None) -> int: ...


class Status(Protocol):
    """What /status, /readyz and `wait_idle` read: per-site counters and queue depths."""

    async def status(self) -> dict[str, dict[str, Any]]: ...

    async def counts(self) -> dict[str, int]: ...

    async def health(self) -> str | None:
        """None when the store file is sound, else what is wrong (read-only, cached)."""
        ...


@runtime_checkable
class SharedBudgets(Protocol):
    """Brevo rate budgets several replicas share (PostgreSQL, agent/store/postgres/budgets.py):
    each take, answer's headers and 429 is counted once for all of them. A store without it
    (SQLite: one agent) leaves the forwarder's budgets in its process. Each call copies the
    shared windows into `budget` (this replica's view, on its own clock `now`)."""

    async def take_budget(
        self, account: str, family: str, budget: Budget, now: float, n: int = 1
    ) -> float:
        """Take `n` requests of the family's windows at once: 0.0 when taken, else the seconds
        to wait before asking again (nothing taken)."""
        ...

    async def observe_budget(
        self,
        account: str,
        family: str,
        budget: Budget,
        now: float,
        seen: tuple[int | None, int | None, float | None],
    ) -> None:
        """What an answer's `x-sib-ratelimit-*` headers say (limit, remaining, reset)."""
        ...

    async def block_budget(
        self, account: str, family: str, budget: Budget, now: float, seconds: float
    ) -> None:
        """A 429: the family waits `seconds` on every replica."""
        ...
