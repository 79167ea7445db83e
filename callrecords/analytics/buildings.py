"""CQD's building file: map subnets to buildings.

The format is the one Call Quality Dashboard takes (learn.microsoft.com/microsoftteams/
cqd-upload-tenant-building-data, "Building data file format"): comma- or tab-separated, no
header row, columns NetworkIP, NetworkName, NetworkRange, BuildingName, then optional ones
(ownership, type, city, ... , InsideCorp, ExpressRoute, VPN) that are read but not needed here.
A stream's subnet (or, without one, its IP address) belongs to the most specific network that
contains it, as CQD joins its expanded ranges.
"""

from __future__ import annotations

import csv
import ipaddress
from dataclasses import dataclass
from pathlib import Path

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BuildingFileError(ValueError):
    """The file does not follow CQD's format; the message names the line."""


@dataclass(frozen=True)
class Building:
    network: IPNetwork
    network_name: str
    name: str


class BuildingMap:
    def __init__(self, buildings: list[Building]) -> None:
        # most specific first, so the first match is the longest prefix
        self.buildings = sorted(buildings, key=lambda b: -b.network.prefixlen)

    def building_of(self, address: str | None) -> str | None:
        if not address:
            return None
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return None
        for building in self.buildings:
            if ip.version == building.network.version and ip in building.network:
                return building.name
        return None


def parse_buildings(text: str, source: str = "building file") -> BuildingMap:
    lines = text.splitlines()
    delimiter = "\t" if any("\t" in line for line in lines[:5]) else ","
    buildings: list[Building] = []
    for number, row in enumerate(csv.reader(lines, delimiter=delimiter), start=1):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) < 4:
            raise BuildingFileError(
                f"{source} line {number}: expected at least 4 columns (NetworkIP, NetworkName, "
                f"NetworkRange, BuildingName), found {len(row)}"
            )
        ip, network_name, prefix, building = (cell.strip() for cell in row[:4])
        if number == 1 and not prefix.isdigit() and prefix.lower() == "networkrange":
            continue  # CQD wants no header; a header row is forgiven
        try:
            network = ipaddress.ip_network(f"{ip}/{int(prefix)}", strict=False)
        except ValueError:
            raise BuildingFileError(
                f"{source} line {number}: {ip!r}/{prefix!r} is not a network and range "
                "(e.g. 192.168.1.0 and 26)"
            ) from None
        buildings.append(Building(network, network_name, building or network_name or str(network)))
    if not buildings:
        raise BuildingFileError(f"{source} holds no networks")
    return BuildingMap(buildings)


def load_buildings(path: Path) -> BuildingMap:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise BuildingFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_buildings(text, str(path))
