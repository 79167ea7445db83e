"""Hostile webhook bodies of about 1 MiB (the largest the webhooks accept), each built to cost
the decoder as much as its shape can: for the hostile-input tests and `make bench`.

Every body that can still be a batch carries one genuine notification, so a test can check
that the genuine record is queued whatever surrounds it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import orjson

from devtools.graphsim.notifier import change_notification
from shared.notifications import MAX_BODY_BYTES, MAX_COMMAS, MAX_ITEMS


@dataclass(frozen=True)
class Body:
    name: str
    body: bytes
    status: int  # what the webhook answers: 202 (the genuine item queued), 400 or 413
    genuine: str | None  # the record id that must be queued (202 only)


def _fill(prefix: bytes, unit: bytes, suffix: bytes, size: int) -> bytes:
    """``prefix + unit * n + suffix`` of at most ``size`` bytes."""
    n = (size - len(prefix) - len(suffix)) // len(unit)
    return prefix + unit * n + suffix


def bodies(client_state: str) -> list[Body]:
    """The hostile bodies, each as large as the webhook accepts (MAX_BODY_BYTES)."""
    size = MAX_BODY_BYTES
    rid = str(uuid.uuid4())
    genuine = orjson.dumps(change_notification(rid, client_state))
    value = b'"value":[' + genuine + b"]"
    # As long a forged clientState as fits: 999 foreign items and the genuine one in ``size``.
    base = len(orjson.dumps(change_notification(rid, "forged-"))) + 1
    pad = (size - len(genuine) - 16) // (MAX_ITEMS - 1) - base
    foreign = [
        change_notification(str(uuid.uuid4()), "forged-" + "x" * pad) for _ in range(MAX_ITEMS - 1)
    ]
    depth = (size - len(value) - 8) // 2
    many_keys = b"".join(b'"junk-key-%07d":0,' % i for i in range(MAX_COMMAS - 100))
    return [
        Body(
            "arrays of {} under a junk key",
            _fill(b'{"x":[', b"{},", b"{}]," + value + b"}", size),
            413,
            None,
        ),
        Body("value: a huge array of {}", _fill(b'{"value":[', b"{},", b"{}]}", size), 413, None),
        Body("junk keys", _fill(b"{", b'"k":0,', value + b"}", size), 413, None),
        Body(
            "deep nesting under a junk key",
            b'{"x":' + b"[" * depth + b"]" * depth + b"," + value + b"}",
            400,
            None,
        ),
        Body(
            "a long string under a junk key",
            _fill(b'{"x":"', b"a", b'",' + value + b"}", size),
            202,
            rid,
        ),
        Body(
            "a long string of escapes",
            _fill(b'{"x":"', b"\\u0000", b'",' + value + b"}", size),
            202,
            rid,
        ),
        Body(
            "non-ASCII text",
            _fill(b'{"x":"', "\u00e9\U0001f600".encode(), b'",' + value + b"}", size),
            202,
            rid,
        ),
        Body(
            "a 1 MiB clientState",
            _fill(b'{"value":[{"clientState":"', b"s", b'"},' + genuine + b"]}", size),
            202,
            rid,
        ),
        Body(
            "many junk keys (just under the comma limit)",
            b'{"value":[' + genuine[:-1] + b"," + many_keys + b'"z":0}]}',
            202,
            rid,
        ),
        Body(
            f"{MAX_ITEMS - 1} items of the wrong shape (decoded item by item)",
            b'{"value":['
            + (b'{"clientState":{"a":"' + b"b" * 900 + b'"}},') * (MAX_ITEMS - 1)
            + genuine
            + b"]}",
            202,
            rid,
        ),
        Body(
            f"{MAX_ITEMS - 1} valid-looking foreign items",
            orjson.dumps({"value": [*foreign, orjson.Fragment(genuine)]}),
            202,
            rid,
        ),
    ]
