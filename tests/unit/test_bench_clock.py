"""bench/latency.py reads a blob's commit time back from Azurite's ETag: the ETag is the
commit time in ms times a random integer in [70000, 100000], computed as a JavaScript double
(node_modules/azurite/dist/src/common/utils/utils.js, newEtag)."""

from __future__ import annotations

import random

from bench.latency import commit_ms_from_etag


def azurite_etag(t_ms: int, factor: int) -> str:
    # JavaScript: (new Date().getTime() * randomInt(70000, 100001)).toString(16).toUpperCase()
    return f'"0x{int(float(t_ms * factor)):X}"'


def test_commit_time_comes_back_to_the_millisecond() -> None:
    rng = random.Random(7)
    t0 = 1_796_000_000_000  # a Unix time in ms
    for _ in range(500):
        t = t0 + rng.randint(0, 600_000)  # committed up to 10 minutes after the POST
        etag = azurite_etag(t, rng.randint(70_000, 100_000))
        assert commit_ms_from_etag(etag, near_ms=t0) == t


def test_a_time_outside_the_window_is_not_guessed() -> None:
    t0 = 1_796_000_000_000
    etag = azurite_etag(t0 + 3_600_000, 85_000)  # an hour after the POST
    assert commit_ms_from_etag(etag, near_ms=t0, window_ms=600_000) is None
    assert commit_ms_from_etag('"not-hex"', near_ms=t0) is None
