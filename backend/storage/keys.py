"""API keys: random bearer tokens, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import Engine, text

from backend.storage import now_iso

PREFIX = "tb_"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(*, engine: Engine) -> str:
    """Create and store a key; the plain key is returned once and never stored."""
    key_id = secrets.token_hex(4)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO api_keys (id, key_hash, created_at) VALUES (:i, :h, :t)"),
            {"i": key_id, "h": _hash(key), "t": now_iso()},
        )
    return key


def verify_key(*, engine: Engine, key: str) -> bool:
    if not key.startswith(PREFIX):
        return False
    with engine.connect() as conn:
        row = conn.execute(text("SELECT key_hash FROM api_keys WHERE key_hash = :h"), {"h": _hash(key)}).first()
    return row is not None and hmac.compare_digest(row[0], _hash(key))
