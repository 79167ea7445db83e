"""The two usage logs Graph serves by date range, and where each goes.

learn.microsoft.com/graph/api/callrecords-callrecord-getpstncalls and
learn.microsoft.com/graph/api/callrecords-callrecord-getdirectroutingcalls.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class UsageKind(StrEnum):
    """A usage log; the value is the blob prefix in the archive container."""

    PSTN = "pstn"
    DIRECT_ROUTING = "directrouting"

    @property
    def function(self) -> str:
        """The Graph function under /communications/callRecords/."""
        return "getPstnCalls" if self is UsageKind.PSTN else "getDirectRoutingCalls"

    @property
    def prefix(self) -> str:
        """Blob folder in the archive container: ``pstn/`` or ``directrouting/``."""
        return f"{self.value}/"

    @property
    def table(self) -> str:
        """Parquet table name in the analytics container."""
        return "pstn_calls" if self is UsageKind.PSTN else "direct_routing_calls"

    @property
    def label(self) -> str:
        return "PSTN" if self is UsageKind.PSTN else "Direct Routing"

    @property
    def end_inclusive(self) -> bool:
        """What the docs say of ``toDateTime``: inclusive for getPstnCalls, exclusive for
        getDirectRoutingCalls. Windows are laid end to end either way (next from = last to),
        so nothing falls between two; a row on a boundary may come twice, which the
        write-if-absent archive absorbs."""
        return self is UsageKind.PSTN


def kinds_from_text(text: str) -> list[UsageKind]:
    """``pstn``, ``directrouting`` or ``all``."""
    if text == "all":
        return list(UsageKind)
    return [UsageKind(text)]


def configured_kinds(names: Iterable[str]) -> list[UsageKind]:
    """The logs USAGE_LOGS_KINDS names (Settings.usage_kinds: by default, those Graph serves
    in this cloud)."""
    return [UsageKind(name) for name in names]
