"""Create the SQLAlchemy engine. SQLite gets WAL journaling, foreign keys and a busy timeout, so the
API process and worker processes can share one database file; PostgreSQL (`postgresql+psycopg://`)
is used as it comes.

Transactions opened through `engine.execution_options(exclusive=True)` run one at a time across
every process sharing the database, from their first statement on: SQLite takes its write lock at
`BEGIN IMMEDIATE` instead of at the first write (which fails at once, rather than waiting, when
another process wrote since this transaction first read), and PostgreSQL takes a transaction-level
advisory lock. Migrations need it: the API and each worker migrate on start.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event

EXCLUSIVE_LOCK_KEY = 0x7475_6E65  # any fixed number: the PostgreSQL advisory lock exclusive transactions share


def _set_wal(cursor, wait_s: float = 30.0) -> None:
    """Switch to WAL. On a new database file that other processes open at the same moment (the API
    and its workers, first start) the switch can fail at once with "database is locked", without
    waiting for the busy timeout: retry it."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            # Let SQLAlchemy issue BEGIN itself: Python's sqlite3 otherwise commits DDL on its own,
            # and a half-applied migration would survive its failure.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            _set_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("exclusive") else "BEGIN")

        return engine

    engine = create_engine(url, pool_pre_ping=True)

    if engine.dialect.driver == "psycopg":

        @event.listens_for(engine, "connect")
        def _str_as_text(dbapi_connection, _record) -> None:
            # psycopg 3 binds parameters on the server and sends a str as type "unknown", for the server
            # to infer at each place it is used; one used twice (`SELECT :j ... WHERE job_id = :j`) then
            # fails with "inconsistent types deduced for parameter" (text versus character varying).
            # Sent as text, it reads as SQLite reads it. (Timestamps are VARCHAR here, never compared
            # to date columns, which is what "unknown" is for.)
            from psycopg.types.string import StrDumper

            dbapi_connection.adapters.register_dumper(str, StrDumper)

    @event.listens_for(engine, "begin")
    def _begin_exclusive(conn) -> None:
        if conn.get_execution_options().get("exclusive") and conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({EXCLUSIVE_LOCK_KEY})")  # released at COMMIT/ROLLBACK

    return engine
