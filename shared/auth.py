"""Tokens: one credential per managed identity, one token request per token lifetime.

azure-identity's ManagedIdentityCredential speaks the App Service protocol
(IDENTITY_ENDPOINT/IDENTITY_HEADER) in Azure and against the local simulator alike.
"""

from __future__ import annotations

import asyncio
import time

from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential

# Refresh this long before expiry, so a token never runs out in the middle of a record.
REFRESH_MARGIN_SECONDS = 300


class TokenProvider:
    """Caches an app-only token for one scope until shortly before it expires."""

    def __init__(self, credential: AsyncTokenCredential, scope: str) -> None:
        self._credential = credential
        self._scope = scope
        self._token: AccessToken | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> AccessToken | None:
        token = self._token
        if token and token.expires_on - REFRESH_MARGIN_SECONDS > time.time():
            return token
        return None

    async def token(self) -> str:
        """A valid bearer token, fetched at most once per lifetime however many callers wait."""
        cached = self._fresh()
        if cached:
            return cached.token
        async with self._lock:
            cached = self._fresh()
            if cached:
                return cached.token
            self._token = await self._credential.get_token(self._scope)
            return self._token.token

    def invalidate(self) -> None:
        """Forget the token (after a 401), so the next call fetches a new one."""
        self._token = None


def managed_identity(client_id: str | None) -> AsyncTokenCredential:
    """The user-assigned (client_id) or system-assigned managed identity."""
    from azure.identity.aio import ManagedIdentityCredential

    return (
        ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    )
