"""Storage clients built from a StorageTarget: a connection string locally, managed identity in Azure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.storage.queue import BinaryBase64DecodePolicy, TextBase64EncodePolicy

# The async retry policy is only exported from here (pinned SDK version in requirements.txt).
from azure.storage.queue._shared.policies_async import LinearRetry
from azure.storage.queue.aio import QueueClient

from shared.graph.retry import STORAGE_QUEUE, RetryPolicy
from shared.settings import SettingError, StorageTarget

if TYPE_CHECKING:  # the blob SDK is imported where a container is made: not by the webhooks
    from azure.storage.blob.aio import ContainerClient

_DEV_SHORTHAND = "UseDevelopmentStorage=true"
# The storage emulator's well-known account: public and documented, not a secret
# (learn.microsoft.com/azure/storage/common/storage-connect-azurite).
DEVELOPMENT_ACCOUNT = "devstoreaccount1"
DEVELOPMENT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def development_storage(blob_port: int = 10000, queue_port: int = 10001) -> str:
    """The connection string of an Azurite on loopback (its default ports: what
    ``UseDevelopmentStorage=true`` means)."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEVELOPMENT_ACCOUNT};"
        f"AccountKey={DEVELOPMENT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{blob_port}/{DEVELOPMENT_ACCOUNT};"
        f"QueueEndpoint=http://127.0.0.1:{queue_port}/{DEVELOPMENT_ACCOUNT};"
    )


DEVELOPMENT_STORAGE = development_storage()


def storage_retry(policy: RetryPolicy) -> LinearRetry:
    """The storage SDK's own retry, from a RetryPolicy with a fixed back-off (factor 1)."""
    assert policy.factor == 1 and policy.tries is not None, "LinearRetry: fixed delay, counted"
    return LinearRetry(
        # The SDK annotates these as int but computes with them as seconds: fractions work.
        backoff=policy.backoff,  # pyright: ignore[reportArgumentType]
        random_jitter_range=policy.spread,  # pyright: ignore[reportArgumentType]
        retry_total=policy.tries - 1,
    )


def queue_options() -> dict[str, Any]:
    """The webhook must answer Graph within 3 s: a sick queue fails fast (then 503, Graph
    retries) instead of sitting in the SDK's default 15 s+ exponential backoff.

    A new retry policy per client: azure-core links a pipeline's policies to each other, so
    one policy object shared by two clients sends the first client's requests through the
    second client's transport (and fails once that client is closed)."""
    return {
        "retry_policy": storage_retry(STORAGE_QUEUE),
        "connection_timeout": 2,
        "read_timeout": 5,
    }


def _conn(target: StorageTarget) -> str | None:
    if target.connection_string == _DEV_SHORTHAND:
        return DEVELOPMENT_STORAGE
    return target.connection_string


def queue_client(
    target: StorageTarget,
    queue: str,
    credential: AsyncTokenCredential | None,
    decode: bool = True,
) -> QueueClient:
    """A queue client that writes base64 text and reads base64 bytes, like the Functions host.
    ``credential`` serves identity-based targets (None with a connection string).

    ``decode=False`` returns message content as sent (text), so one message that is not
    base64 cannot make a whole receive fail (reading the poison queue).
    """
    policies: dict[str, Any] = {
        "message_encode_policy": TextBase64EncodePolicy(),
        "message_decode_policy": BinaryBase64DecodePolicy() if decode else None,
        **queue_options(),
    }
    conn = _conn(target)
    if conn:
        return QueueClient.from_connection_string(conn, queue, **policies)
    if not target.queue_uri or credential is None:
        raise SettingError(f"{target.setting}__queueServiceUri is not set: the queue URI is needed")
    return QueueClient(target.queue_uri, queue, credential=credential, **policies)


def container_client(
    target: StorageTarget, container: str, credential: AsyncTokenCredential | None
) -> ContainerClient:
    """A container client that owns its connection pool, so closing it closes everything
    (one made by BlobServiceClient.get_container_client leaves the service's pool open)."""
    from azure.storage.blob.aio import ContainerClient

    conn = _conn(target)
    if conn:
        return ContainerClient.from_connection_string(conn, container)
    if not target.blob_uri or credential is None:
        raise SettingError(f"{target.setting}__blobServiceUri is not set: the blob URI is needed")
    return ContainerClient(target.blob_uri, container, credential=credential)
