"""Signed deliveries: HMAC-SHA256 of the raw body with a shared secret, sent as
`X-Tunebridge-Signature: sha256=<hex>` (as GitHub does). Labelled-data webhooks are verified with it;
job callbacks and the agents' corrections are signed with it."""

from __future__ import annotations

import hashlib
import hmac

from backend.errors import Unauthorized

HEADER = "X-Tunebridge-Signature"


class SignatureError(Unauthorized):
    """Missing or wrong signature: the delivery is refused and nothing is stored."""


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(*, body: bytes, header: str | None, secret: str) -> None:
    if not header:
        raise SignatureError(f"missing {HEADER} header (expected 'sha256=<hex HMAC of the raw body>')")
    scheme, _, given = header.partition("=")
    if scheme != "sha256" or not given:
        raise SignatureError(f"{HEADER} must look like 'sha256=<hex>'")
    if not hmac.compare_digest(sign(body, secret), "sha256=" + given.strip().lower()):
        raise SignatureError("signature does not match the body (check the shared secret, and sign the raw bytes)")
