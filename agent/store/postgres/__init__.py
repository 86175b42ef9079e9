"""The PostgreSQL backend of the store (issue 17): psycopg 3's async API, numbered schema
migrations, the SQLite store's rules (docs/postgresql.md)."""

from agent.store.postgres.dsn import is_postgres, shown
from agent.store.postgres.schema import SCHEMA_VERSION, migrate
from agent.store.postgres.store import PostgresStore

__all__ = ["SCHEMA_VERSION", "PostgresStore", "is_postgres", "migrate", "shown"]
