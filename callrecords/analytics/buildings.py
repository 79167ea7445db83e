"""CQD's building file: subnets -> buildings, places, and whether they are inside the corporate
network.

The format is the one Call Quality Dashboard takes (learn.microsoft.com/microsoftteams/
cqd-upload-tenant-building-data, "Building data file format"): comma- or tab-separated, the 15
columns NetworkIP, NetworkName, NetworkRange, BuildingName, OwnershipType, BuildingType,
BuildingOfficeType, City, ZipCode, Country, State, Region, InsideCorp, ExpressRoute, VPN, in
that order. CQD wants no header row; one is forgiven here. Booleans are 0 or 1; VPN is optional
(0), and so, here, are the columns after BuildingName (a file of subnets and names works too).
NetworkIP + NetworkRange is the subnet; a stream's subnet (or, without one, its IP address)
belongs to the most specific network that contains it, as CQD joins its expanded ranges.
"""

from __future__ import annotations

import csv
import ipaddress
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Column(IntEnum):
    NETWORK_IP = 0
    NETWORK_NAME = 1
    NETWORK_RANGE = 2
    BUILDING_NAME = 3
    OWNERSHIP_TYPE = 4
    BUILDING_TYPE = 5
    BUILDING_OFFICE_TYPE = 6
    CITY = 7
    ZIP_CODE = 8
    COUNTRY = 9
    STATE = 10
    REGION = 11
    INSIDE_CORP = 12
    EXPRESS_ROUTE = 13
    VPN = 14


HEADER = (
    "NetworkIP",
    "NetworkName",
    "NetworkRange",
    "BuildingName",
    "OwnershipType",
    "BuildingType",
    "BuildingOfficeType",
    "City",
    "ZipCode",
    "Country",
    "State",
    "Region",
    "InsideCorp",
    "ExpressRoute",
    "VPN",
)


class BuildingFileError(ValueError):
    """The file does not follow CQD's format; the message names the line."""


@dataclass(frozen=True)
class Building:
    network: IPNetwork
    network_name: str
    name: str
    ownership_type: str = ""
    building_type: str = ""
    office_type: str = ""
    city: str = ""
    zip_code: str = ""
    country: str = ""
    state: str = ""
    region: str = ""
    inside_corp: bool = False
    express_route: bool = False
    vpn: bool = False


class BuildingMap:
    def __init__(self, buildings: list[Building]) -> None:
        # most specific first, so the first match is the longest prefix
        self.buildings = sorted(buildings, key=lambda b: -b.network.prefixlen)

    def find(self, address: str | None) -> Building | None:
        if not address:
            return None
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return None
        for building in self.buildings:
            if ip.version == building.network.version and ip in building.network:
                return building
        return None

    def building_of(self, address: str | None) -> str | None:
        found = self.find(address)
        return found.name if found else None


def _flag(cells: list[str], column: Column, source: str, number: int) -> bool:
    value = cells[column] if len(cells) > column else ""
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    raise BuildingFileError(
        f"{source} line {number}: {HEADER[column]} must be 0 or 1, found {value!r}"
    )


def parse_buildings(text: str, source: str = "building file") -> BuildingMap:
    lines = text.splitlines()
    delimiter = "\t" if any("\t" in line for line in lines[:5]) else ","
    buildings: list[Building] = []
    for number, row in enumerate(csv.reader(lines, delimiter=delimiter), start=1):
        if not row or not any(cell.strip() for cell in row):
            continue
        cells = [cell.strip() for cell in row]
        if len(cells) < 4:
            raise BuildingFileError(
                f"{source} line {number}: expected at least 4 columns (NetworkIP, NetworkName, "
                f"NetworkRange, BuildingName), found {len(cells)}"
            )
        if len(cells) > len(HEADER):
            raise BuildingFileError(
                f"{source} line {number}: expected at most {len(HEADER)} columns "
                f"({', '.join(HEADER)}), found {len(cells)}"
            )
        if number == 1 and cells[Column.NETWORK_RANGE].lower() == "networkrange":
            continue  # CQD wants no header; a header row is forgiven
        ip, prefix = cells[Column.NETWORK_IP], cells[Column.NETWORK_RANGE]
        try:
            network = ipaddress.ip_network(f"{ip}/{int(prefix)}", strict=False)
        except ValueError:
            raise BuildingFileError(
                f"{source} line {number}: {ip!r}/{prefix!r} is not a network and range "
                "(e.g. 192.168.1.0 and 26)"
            ) from None
        padded = cells + [""] * (len(HEADER) - len(cells))
        network_name = padded[Column.NETWORK_NAME]
        buildings.append(
            Building(
                network,
                network_name,
                padded[Column.BUILDING_NAME] or network_name or str(network),
                ownership_type=padded[Column.OWNERSHIP_TYPE],
                building_type=padded[Column.BUILDING_TYPE],
                office_type=padded[Column.BUILDING_OFFICE_TYPE],
                city=padded[Column.CITY],
                zip_code=padded[Column.ZIP_CODE],
                country=padded[Column.COUNTRY],
                state=padded[Column.STATE],
                region=padded[Column.REGION],
                inside_corp=_flag(cells, Column.INSIDE_CORP, source, number),
                express_route=_flag(cells, Column.EXPRESS_ROUTE, source, number),
                vpn=_flag(cells, Column.VPN, source, number),
            )
        )
    if not buildings:
        raise BuildingFileError(f"{source} holds no networks")
    return BuildingMap(buildings)


def load_buildings(path: Path) -> BuildingMap:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise BuildingFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_buildings(text, str(path))
