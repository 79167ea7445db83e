"""The work queue: ids go in durably (all of a batch at once), or the caller hears why not."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Protocol

import orjson
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue.aio import QueueClient

from shared.messages import WorkItem

log = logging.getLogger(__name__)


# Queue messages expire after 7 days unless sent with a time to live; -1 means never (Put
# Message, api-version 2017-07-29 and later:
# learn.microsoft.com/rest/api/storageservices/put-message). A parked record must wait for a
# person however long that takes, so every poison message is sent with -1; so is every work
# message: a week-long outage (storage, Graph or the app stopped) must not silently drop the
# ids and slices still waiting in the queue.
NEVER_EXPIRES = -1


class Message(Protocol):
    def to_json(self) -> str: ...


class QueueUnavailable(RuntimeError):
    """The queue did not take every message: the sender must not claim success."""


def _queue_missing(result: object) -> bool:
    code: object = getattr(result, "error_code", None)
    return isinstance(result, ResourceNotFoundError) and str(code) == "QueueNotFound"


class WorkQueue:
    """Send WorkItems to the records queue (or its poison queue), concurrently."""

    def __init__(self, queue: QueueClient, poison: QueueClient) -> None:
        self.queue = queue
        self.poison = poison

    async def put(self, items: Iterable[Message], delay_seconds: int | None = None) -> int:
        """Queue every item (WorkItem or ControlItem), concurrently; raise QueueUnavailable
        unless all were stored."""
        items = list(items)
        results = await self._send_all(items, delay_seconds)
        if any(_queue_missing(r) for r in results):
            # A fresh storage account (or a deleted queue): create it and send what failed.
            await self.ensure()
            retry = [i for i, r in zip(items, results, strict=True) if _queue_missing(r)]
            again = iter(await self._send_all(retry, delay_seconds))
            results = [next(again) if _queue_missing(r) else r for r in results]
        failed = [r for r in results if isinstance(r, BaseException)]
        for r in failed:
            if not isinstance(r, AzureError | OSError):
                raise r  # a bug, not an outage: let it surface
        if failed:
            raise QueueUnavailable(
                f"{len(failed)} of {len(items)} messages not queued: {type(failed[0]).__name__}"
            ) from failed[0]
        return len(items)

    async def _send_all(
        self, items: list[Message], delay_seconds: int | None
    ) -> list[object | BaseException]:
        return await asyncio.gather(
            *(
                self.queue.send_message(
                    item.to_json(), visibility_timeout=delay_seconds, time_to_live=NEVER_EXPIRES
                )
                for item in items
            ),
            return_exceptions=True,
        )

    async def _send_poison(self, text: str) -> None:
        # Parked messages never expire: the queue's default time to live is 7 days, and a
        # record parked on a Friday must still be there after a long weekend, or a year.
        try:
            await self.poison.send_message(text, time_to_live=NEVER_EXPIRES)
        except ResourceNotFoundError:
            await self.ensure()
            await self.poison.send_message(text, time_to_live=NEVER_EXPIRES)

    async def put_poison(self, item: WorkItem, reason: str, error: str | None = None) -> None:
        """Park an item that cannot succeed, with its reason and last error, for
        `cli.py replay-poison`."""
        await self._send_poison(item.poisoned(reason, error).to_json())

    async def put_raw_poison(self, body: bytes, reason: str) -> None:
        """Park a message that is not a WorkItem at all, with the reason and its first bytes."""
        text = body[:2000].decode("utf-8", errors="replace")
        await self._send_poison(orjson.dumps({"reason": reason, "body": text}).decode())

    async def depth(self) -> int:
        """Messages in the queue (approximate, as the service counts them)."""
        props = await self.queue.get_queue_properties()
        return int(props.approximate_message_count or 0)

    async def oldest_inserted(self) -> datetime | None:
        """When the message at the head of the queue was inserted (None: empty)."""
        # peek_messages is a coroutine returning a list (not an async iterator).
        for message in await self.queue.peek_messages(max_messages=1):
            if message.inserted_on:
                return message.inserted_on.astimezone(UTC)
        return None

    async def poison_depth(self) -> int:
        props = await self.poison.get_queue_properties()
        return int(props.approximate_message_count or 0)

    async def repark(self, body: str) -> str:
        """Send ``body`` to the poison queue again with no expiry (encoded like every message);
        the new message's id."""
        return (await self.poison.send_message(body, time_to_live=NEVER_EXPIRES)).id

    async def ensure(self) -> None:
        """Create both queues if missing (on first need: a fresh account, a deleted queue; in
        Azure, Bicep creates them). A refusal (403) is logged, not raised: the send that
        needed the queue reports the real failure."""
        for q in (self.queue, self.poison):
            try:
                await q.create_queue()
            except ResourceExistsError:
                pass
            except AzureError as exc:
                log.warning("could not create queue %s: %s", q.queue_name, type(exc).__name__)
