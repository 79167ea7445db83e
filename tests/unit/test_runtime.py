"""Per-process clients: one credential per managed identity, shared and closed with the runtime."""

from __future__ import annotations

from shared.runtime import build_runtime
from shared.settings import load_settings

UAMI = "11111111-2222-3333-4444-555555555555"
IDENTITY_BASED = {
    "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
    "AzureWebJobsStorage__blobServiceUri": "https://acct.blob.core.windows.net",
    "AZURE_CLIENT_ID": UAMI,
    "GRAPH_CLIENT_STATE": "runtime-test-client-state-0123456789",
}


async def test_one_credential_serves_graph_and_storage() -> None:
    rt = build_runtime(load_settings(IDENTITY_BASED))
    try:
        assert rt.credentials == [rt.credential]
        assert rt.work.queue.credential is rt.credential
        assert rt.work.poison.credential is rt.credential
        assert rt.archive.container.credential is rt.credential
    finally:
        await rt.close()


async def test_a_second_identity_gets_its_own_credential() -> None:
    other = "99999999-2222-3333-4444-555555555555"
    env = {
        **IDENTITY_BASED,
        "ARCHIVE_STORAGE__blobServiceUri": "https://arch.blob.core.windows.net",
        "ARCHIVE_STORAGE__clientId": other,
    }
    rt = build_runtime(load_settings(env))
    try:
        assert len(rt.credentials) == 2
        assert rt.archive.container.credential is not rt.credential
        assert rt.work.queue.credential is rt.credential
    finally:
        await rt.close()
