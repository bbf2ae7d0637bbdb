"""Signature schemes of the webhook senders, verified over the raw body bytes in constant time.

Each `sign_*` is the sender's own computation (MLflow's `_generate_hmac_signature`, Databricks'
documented hex HMAC, GitHub's `sha256=` HMAC); `verify_*` recomputes it and compares with
`hmac.compare_digest`, so a forged header cannot be found by timing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def _digest(secret: str, content: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), content, hashlib.sha256).digest()


def sign_mlflow(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    signed = delivery_id.encode("utf-8") + b"." + timestamp.encode("utf-8") + b"." + body
    return "v1," + base64.b64encode(_digest(secret, signed)).decode("ascii")


def verify_mlflow(secret: str, delivery_id: str, timestamp: str, body: bytes, header: str) -> bool:
    expected = sign_mlflow(secret, delivery_id, timestamp, body)
    return hmac.compare_digest(expected.encode("ascii"), header.strip().encode("utf-8", "replace"))


def sign_databricks(secret: str, body: bytes) -> str:
    return _digest(secret, body).hex()


def verify_databricks(secret: str, body: bytes, header: str) -> bool:
    expected = sign_databricks(secret, body)
    return hmac.compare_digest(expected.encode("ascii"), header.strip().lower().encode("utf-8", "replace"))


def sign_github(secret: str, body: bytes) -> str:
    return "sha256=" + _digest(secret, body).hex()


def verify_github(secret: str, body: bytes, header: str) -> bool:
    expected = sign_github(secret, body)
    return hmac.compare_digest(expected.encode("ascii"), header.strip().encode("utf-8", "replace"))
