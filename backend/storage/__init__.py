"""Storage: one SQLAlchemy engine per process (SQLite WAL by default, Postgres by URL) and ordered migrations."""
