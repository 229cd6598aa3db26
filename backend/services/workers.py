"""Which worker processes are alive: each registers on start, renews `seen_at` every few seconds from
a thread of its own (also while a job runs) and leaves on a clean exit. A killed worker simply stops
being seen; readiness counts only workers seen within the lease time."""

from __future__ import annotations

import time

from sqlalchemy import Engine, text

from backend.storage import now_iso


def join(*, engine: Engine, owner: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM workers WHERE id = :o"), {"o": owner})
        conn.execute(
            text("INSERT INTO workers (id, started_at, seen_at) VALUES (:o, :t, :now)"),
            {"o": owner, "t": now_iso(), "now": time.time()},
        )


def beat(*, engine: Engine, owner: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE workers SET seen_at = :now WHERE id = :o"), {"o": owner, "now": time.time()})


def leave(*, engine: Engine, owner: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM workers WHERE id = :o"), {"o": owner})


def live(*, engine: Engine, within_s: float) -> int:
    """How many workers were seen in the last `within_s` seconds."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT COUNT(*) FROM workers WHERE seen_at >= :since"), {"since": time.time() - within_s}
            ).scalar_one()
        )
