"""Access tokens for the App Service managed-identity endpoint and the Graph routes.

Tokens are opaque to clients but self-verifying (HMAC over expiry, client id and a random
nonce), so a simulator restarted with the same secret still honours the tokens that
azure-identity has cached, exactly as Entra ID tokens outlive a Graph front-end restart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson

# Shared by process.py and __main__: restarts with the same secret keep tokens valid.
SECRET_ENV = "GRAPHSIM_SECRET"
DEFAULT_CLIENT_ID = "00000000-0000-0000-0000-00000000a11d"


@dataclass(frozen=True)
class Token:
    value: str
    expires_on: int
    client_id: str
    resource: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """Issues and checks bearer tokens; ``lifetime`` in seconds."""

    def __init__(self, secret: bytes, lifetime: int) -> None:
        self._secret = secret
        self.lifetime = lifetime

    def _mac(self, payload: bytes) -> str:
        return _b64(hmac.new(self._secret, b"token:" + payload, hashlib.sha256).digest())

    def issue(self, resource: str, client_id: str | None) -> Token:
        expires_on = int(time.time()) + self.lifetime
        cid = client_id or DEFAULT_CLIENT_ID
        payload = orjson.dumps(
            {"e": expires_on, "c": cid, "r": resource, "n": secrets.token_hex(8)}
        )
        return Token(f"sim.{_b64(payload)}.{self._mac(payload)}", expires_on, cid, resource)

    def check(self, value: str) -> tuple[Token | None, str]:
        """(token, "") when valid, else (None, why) for the 401 message."""
        try:
            prefix, body, mac = value.split(".")
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            return None, "Access token validation failure. Invalid audience or malformed token."
        if prefix != "sim" or not hmac.compare_digest(mac, self._mac(payload)):
            return None, "Access token validation failure. Invalid signature."
        data = orjson.loads(payload)
        if int(data["e"]) <= time.time():
            return None, "Lifetime validation failed, the token is expired."
        return Token(value, int(data["e"]), str(data["c"]), str(data["r"])), ""
