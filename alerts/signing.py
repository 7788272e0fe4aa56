"""HMAC signatures of webhook bodies, so a receiver can tell pipewarden's posts from anyone else's.

>>> headers = sign_headers(b"secret", b'{"status":"firing"}', timestamp=1700000000)
>>> headers["X-Pipewarden-Signature"][:7]
'sha256='
>>> verify_signature(b"secret", b'{"status":"firing"}', headers["X-Pipewarden-Timestamp"],
...                  headers["X-Pipewarden-Signature"], now=1700000100)
True

The signed message is the timestamp, a dot, and the raw body
(``b"1700000000." + body``); the signature is ``sha256=`` and the hex
HMAC-SHA256 of it under the shared secret. A receiver recomputes it over the
body bytes it received (before parsing them), compares in constant time, and
refuses a timestamp more than five minutes from its own clock, so a captured
request cannot be replayed later. Every retry is signed again with a fresh
timestamp; ``X-Pipewarden-Delivery`` stays the same across retries, so a
receiver can also drop a delivery it has already seen.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["DELIVERY_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "sign", "sign_headers", "verify_signature"]

SIGNATURE_HEADER = "X-Pipewarden-Signature"
TIMESTAMP_HEADER = "X-Pipewarden-Timestamp"
DELIVERY_HEADER = "X-Pipewarden-Delivery"


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``b"<timestamp>." + body`` under ``secret``."""
    mac = hmac.new(secret, str(int(timestamp)).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def sign_headers(secret: bytes, body: bytes, *, timestamp: float) -> dict[str, str]:
    """The timestamp and signature headers for one POST of ``body``."""
    ts = int(timestamp)
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(secret, body, ts)}


def verify_signature(
    secret: bytes, body: bytes, timestamp: str | None, signature: str | None, *, now: float, tolerance: float = 300.0
) -> bool:
    """True when ``signature`` signs ``body`` at ``timestamp`` under ``secret`` and the timestamp is within
    ``tolerance`` seconds of ``now``."""
    if not timestamp or not signature:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, ts), signature)
