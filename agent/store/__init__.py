"""The store: durable inbox, jobs, dedupe state, watermarks, cart timers and dead letters.

`ports.py` names what each stage may ask of it (narrow Protocols); `sqlite.py` is the
embedded backend that implements them all, composed of one module per concern (schema, tx,
inbox, chunk, jobs, deadletters, meta, carts, rows).
"""

from agent.store.ports import DeadLetter, IngestResult
from agent.store.sqlite import SqliteStore

__all__ = ["DeadLetter", "IngestResult", "SqliteStore"]
