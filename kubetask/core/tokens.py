"""Per-task completion-callback tokens (DESIGN §4, ``POST /tasks/{id}/complete``).

The operator hands each task pod a token; the API verifies it.  Both derive it
from a shared secret and the Task's identity, so no token is ever stored and a
token for one Task (or one incarnation of a name) is useless for another.
"""

from __future__ import annotations

import hashlib
import hmac


def task_token(secret: str, namespace: str, name: str, uid: str) -> str:
    """The callback token of the Task ``namespace/name`` with this ``uid``."""
    message = f"{namespace}/{name}/{uid}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_task_token(secret: str, namespace: str, name: str, uid: str, token: str) -> bool:
    """Constant-time check of a presented callback token."""
    return hmac.compare_digest(task_token(secret, namespace, name, uid), token)


def hash_api_key(key: str) -> str:
    """The SHA-256 hex digest kept in a Tenant's API-key Secret instead of the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()
