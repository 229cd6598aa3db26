"""Storage: one SQLAlchemy engine per process (SQLite WAL by default, Postgres by URL) and ordered migrations."""

from datetime import UTC, datetime


def now_iso() -> str:
    """The timestamp format every table stores: UTC, ISO 8601, whole seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")
