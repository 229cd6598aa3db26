"""Ordered, named schema migrations, recorded in `schema_migrations` and applied on start.

Each migration is a list of SQL statements that SQLite and PostgreSQL both accept. Append new
migrations to the end; never edit one that has shipped.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

from backend.storage import now_iso

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "0001_api_keys",
        [
            """CREATE TABLE api_keys (
            id VARCHAR(16) PRIMARY KEY,
            key_hash VARCHAR(64) NOT NULL UNIQUE,
            created_at VARCHAR(32) NOT NULL
        )""",
        ],
    ),
    (
        "0002_datasets",
        [
            """CREATE TABLE datasets (
            name VARCHAR(64) PRIMARY KEY,
            examples INTEGER NOT NULL,
            created_at VARCHAR(32) NOT NULL,
            updated_at VARCHAR(32) NOT NULL
        )""",
        ],
    ),
    (
        "0003_jobs",
        [
            """CREATE TABLE jobs (
            id VARCHAR(32) PRIMARY KEY,
            kind VARCHAR(16) NOT NULL,
            status VARCHAR(16) NOT NULL,
            dataset VARCHAR(64) NOT NULL REFERENCES datasets(name),
            params TEXT NOT NULL,
            progress TEXT,
            result TEXT,
            error TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            lease_owner VARCHAR(64),
            lease_expires_at DOUBLE PRECISION,
            created_at VARCHAR(32) NOT NULL,
            updated_at VARCHAR(32) NOT NULL
        )""",
            "CREATE INDEX jobs_status ON jobs (status, created_at)",
        ],
    ),
    (
        "0004_adapters",
        [
            """CREATE TABLE adapters (
            name VARCHAR(64) NOT NULL,
            version INTEGER NOT NULL,
            base_model TEXT NOT NULL,
            dataset VARCHAR(64) NOT NULL,
            dataset_hash VARCHAR(64) NOT NULL,
            job_id VARCHAR(32) NOT NULL UNIQUE,
            path TEXT NOT NULL,
            schema_fields TEXT,
            metrics TEXT NOT NULL,
            created_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (name, version)
        )""",
            """CREATE TABLE adapter_aliases (
            name VARCHAR(64) NOT NULL,
            alias VARCHAR(32) NOT NULL,
            version INTEGER NOT NULL,
            updated_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (name, alias),
            FOREIGN KEY (name, version) REFERENCES adapters (name, version)
        )""",
            """CREATE TABLE adapter_alias_history (
            name VARCHAR(64) NOT NULL,
            alias VARCHAR(32) NOT NULL,
            seq INTEGER NOT NULL,
            version INTEGER NOT NULL,
            reason TEXT,
            set_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (name, alias, seq)
        )""",
            "ALTER TABLE jobs ADD COLUMN adapter_name VARCHAR(64)",
        ],
    ),
    (
        "0005_job_events_and_callbacks",
        [
            """CREATE TABLE job_events (
            job_id VARCHAR(32) NOT NULL REFERENCES jobs(id),
            seq INTEGER NOT NULL,
            type VARCHAR(16) NOT NULL,
            data TEXT NOT NULL,
            created_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (job_id, seq)
        )""",
            "ALTER TABLE jobs ADD COLUMN callback_url TEXT",
            "ALTER TABLE jobs ADD COLUMN callback_state VARCHAR(16)",
            "ALTER TABLE jobs ADD COLUMN callback_attempts INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE jobs ADD COLUMN callback_error TEXT",
            "ALTER TABLE jobs ADD COLUMN callback_next_at DOUBLE PRECISION",
        ],
    ),
    (
        "0006_labelled_data_webhook",
        [
            """CREATE TABLE webhook_deliveries (
            delivery_id VARCHAR(128) PRIMARY KEY,
            dataset VARCHAR(64) NOT NULL,
            added INTEGER NOT NULL,
            job_id VARCHAR(32),
            received_at VARCHAR(32) NOT NULL
        )""",
            "ALTER TABLE datasets ADD COLUMN examples_at_last_train INTEGER NOT NULL DEFAULT 0",
        ],
    ),
    (
        "0007_evaluation",
        [
            "ALTER TABLE adapters ADD COLUMN promotion TEXT",
            "ALTER TABLE jobs ADD COLUMN follow_up TEXT",
        ],
    ),
    (
        "0008_dataset_committed_bytes",
        [
            # The length of a dataset's file that committed appends account for; NULL until first repaired.
            "ALTER TABLE datasets ADD COLUMN committed_bytes BIGINT",
        ],
    ),
    (
        "0009_workers",
        [
            # Worker processes alive now: each renews seen_at while it runs (readiness reads it).
            """CREATE TABLE workers (
            id VARCHAR(128) PRIMARY KEY,
            started_at VARCHAR(32) NOT NULL,
            seen_at DOUBLE PRECISION NOT NULL
        )""",
        ],
    ),
]


def migrate(engine: Engine, migrations: list[tuple[str, list[str]]] = MIGRATIONS) -> list[str]:
    """Apply every migration not yet recorded, in order; return the names applied now."""
    applied_now: list[str] = []
    with engine.execution_options(exclusive=True).begin() as conn:  # one process at a time (engine.py)
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name VARCHAR(128) PRIMARY KEY, applied_at VARCHAR(32) NOT NULL)"
            )
        )
    for name, statements in migrations:
        with engine.execution_options(exclusive=True).begin() as conn:  # all or nothing, one process at a time
            done = conn.execute(text("SELECT 1 FROM schema_migrations WHERE name = :n"), {"n": name}).first()
            if done:
                continue
            for statement in statements:
                conn.execute(text(statement))
            conn.execute(
                text("INSERT INTO schema_migrations (name, applied_at) VALUES (:n, :t)"), {"n": name, "t": now_iso()}
            )
        applied_now.append(name)
    return applied_now
