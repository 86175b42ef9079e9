"""The store: durable inbox, jobs, dedupe state, watermarks and dead letters.

One narrow interface (the methods of `SqliteStore`) so that a shared backend can follow.
"""

from agent.store.sqlite import DeadLetter, IngestResult, Outcome, SqliteStore

__all__ = ["DeadLetter", "IngestResult", "Outcome", "SqliteStore"]
