"""The group commit's queue, shared by both stores: the writes that arrive while a commit runs
wait for the next one, which runs them all (agent/store/tx.py `StoreBase._write` on SQLite,
agent/store/postgres/base.py `PgBase._write`).

What a commit does with its writes is each store's own (SQLite's on its thread, with
savepoints by hand; PostgreSQL's awaited, with advisory locks and runs again): this holds
only the queue, the one task that drains it, and the handing of each outcome to its writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["GroupCommit", "Outcome"]

W = TypeVar("W")
# A write's outcome: (True, its result) or (False, the exception it failed with).
Outcome = tuple[bool, Any]


class GroupCommit(Generic[W]):
    """`commit(writes)` runs a group in one transaction and returns each write's outcome, in
    order; when it raises (BEGIN or COMMIT failed: nothing of the group is stored), every
    writer of the group gets `failed(exc)`."""

    def __init__(
        self,
        commit: Callable[[list[W]], Awaitable[list[Outcome]]],
        failed: Callable[[Exception], Exception],
        name: str,
    ) -> None:
        self._commit = commit
        self._failed = failed
        self._name = name
        self._queue: list[tuple[W, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, write: W) -> Any:
        """Queue a write for the next group commit and return its result (or raise)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((write, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=self._name)
        return await fut

    async def drained(self) -> None:
        """Wait until the writes queued are committed (or failed)."""
        if self._flusher is not None and not self._flusher.done():
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def _flush(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            try:
                outcomes = await self._commit([w for w, _ in group])
            except Exception as exc:
                failure = self._failed(exc)
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(failure)
                continue
            for (_, fut), (ok, value) in zip(group, outcomes, strict=True):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
