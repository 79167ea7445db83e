"""Notification parsing: handshake token rules, clientState, ids, and batches sorted item by item."""

from __future__ import annotations

import orjson
import pytest

from shared.ids import is_guid, normalize_id
from shared.messages import MessageError, Source, WorkItem
from shared.notifications import (
    MAX_VALIDATION_TOKEN,
    BadRequest,
    check_validation_token,
    parse_body,
    same_secret,
    sort_batch,
)

SECRET = "the-client-state"
RID = "e523d2ed-2966-4b6b-925b-754a88034cc5"


def note(rid: str = RID, state: str = SECRET, **extra: object) -> dict[str, object]:
    item: dict[str, object] = {
        "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
        "changeType": "updated",
        "clientState": state,
        "resource": f"communications/callRecords/{rid}",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.callRecord",
            "@odata.id": f"communications/callRecords/{rid}",
            "id": rid,
        },
        "tenantId": "dc368399-474c-4d40-900c-6265431fd81f",
    }
    item.update(extra)
    return item


def test_validation_token_is_echoed_unchanged() -> None:
    token = "Validation: Testing client application reachability <script>&amp;"
    assert check_validation_token(token) == token


@pytest.mark.parametrize(
    "token",
    [
        "x" * 1025,  # Graph's token is opaque: longer than the old 1,024-character limit
        "x" * MAX_VALIDATION_TOKEN,
        "é" * (MAX_VALIDATION_TOKEN // 2),  # 8 KiB of UTF-8
        "Validation: 𝔘 ✓ +/=&?%#<b> " * 200,
    ],
)
def test_any_opaque_token_up_to_8_kib_is_echoed_as_it_came(token: str) -> None:
    assert check_validation_token(token) == token


@pytest.mark.parametrize(
    "token",
    [
        "",
        "x" * (MAX_VALIDATION_TOKEN + 1),
        "é" * (MAX_VALIDATION_TOKEN // 2 + 1),
        "a\r\nSet-Cookie: x=1",
        "a\x00b",
        "a\x85b",  # C1 NEXT LINE
    ],
)
def test_absurd_validation_tokens_are_refused(token: str) -> None:
    with pytest.raises(BadRequest):
        check_validation_token(token)


def test_client_state_compare() -> None:
    assert same_secret(SECRET, SECRET)
    assert not same_secret(SECRET + "x", SECRET)
    assert not same_secret(None, SECRET)
    assert not same_secret(["x"], SECRET)
    assert not same_secret("ünïcödé", SECRET)


@pytest.mark.parametrize(
    "value",
    [RID, RID.upper(), "00000000-0000-0000-0000-000000000000"],
)
def test_guids_accepted(value: str) -> None:
    assert is_guid(value)
    assert normalize_id(value) == value.lower()


@pytest.mark.parametrize(
    "value",
    [
        "",
        "../" + RID[3:],
        RID + "\n",
        "{" + RID + "}",
        RID.replace("-", "%2F", 1),
        RID + "?$select=id",
        "https://evil.example/" + RID,
        RID[:-1] + "g",
        12345,
        None,
        "е523d2ed-2966-4b6b-925b-754a88034cc5",  # Cyrillic е
    ],
)
def test_non_guids_rejected(value: object) -> None:
    assert not is_guid(value)
    with pytest.raises(ValueError):
        normalize_id(value)


def test_batch_keeps_every_genuine_id_and_drops_the_rest_with_reasons() -> None:
    other = "0b3c1a30-0b7e-4c41-8b57-4a8c1e2e9d11"
    third = "a1b2c3d4-e5f6-4711-8899-aabbccddeeff"
    value = [
        note(),
        note(other),
        note(state="forged"),
        note(RID.upper()),  # same record, other case: a duplicate
        note("not-a-guid"),
        note(third, resource="users/" + third),
        note(third, resourceData={"@odata.type": "#microsoft.graph.user", "id": third}),
        note(third, changeType="deleted"),
        "string item",
        {"lifecycleEvent": "missed", "clientState": SECRET},
        note(third, resourceData={"@odata.type": "#microsoft.graph.callrecord", "id": third}),
    ]
    batch = sort_batch(value, SECRET)
    assert batch.ids == [RID, other, third]
    assert batch.duplicates == 1
    assert len(batch.dropped) == 7
    assert any("clientState" in d for d in batch.dropped)
    assert all(SECRET not in d and "forged" not in d for d in batch.dropped)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"{", 400),
        (b"[]", 400),
        (b'{"value": {}}', 400),
        (b'{"values": []}', 400),
        (b"x" * (4 * 1024 * 1024 + 1), 413),
        (orjson.dumps({"value": [note()] * 1001}), 413),
    ],
)
def test_bodies_that_are_not_batches(body: bytes, status: int) -> None:
    with pytest.raises(BadRequest) as err:
        parse_body(body)
    assert err.value.status == status


def test_queue_message_round_trip_and_rejects() -> None:
    item = WorkItem.new(RID.upper(), Source.NOTIFICATION)
    back = WorkItem.from_body(item.to_json().encode())
    assert back.id == RID and back.source == "notification" and back.first_seen == item.first_seen
    assert WorkItem.from_body(RID.encode()).id == RID  # a bare id queued by hand
    for bad in [
        b"{",
        b"[1]",
        b'{"id": "../x"}',
        b'{"id": "' + RID.encode() + b'", "source": "x"}',
        b"\xff\xfe",
    ]:
        with pytest.raises(MessageError):
            WorkItem.from_body(bad)


@pytest.mark.parametrize(
    "odata_type",
    [
        "#Microsoft.Graph.callrecord",  # the change-notification example
        "#Microsoft.Graph.callRecord",
        "#microsoft.graph.callRecords.callRecord",  # the entity type's full name
        "microsoft.graph.callRecords.callRecord",
    ],
)
def test_every_documented_odata_type_spelling_is_genuine(odata_type: str) -> None:
    item = note(resourceData={"@odata.type": odata_type, "id": RID})
    batch = sort_batch([item], SECRET)
    assert (batch.ids, batch.dropped) == ([RID], [])


def test_previous_secret_is_accepted_during_a_rotation() -> None:
    old, new = "old-secret", "new-secret"
    value = [note(state=old), note(RID.replace("e5", "f5"), state=new), note(state="other")]
    batch = sort_batch(value, (new, old))
    assert len(batch.ids) == 2 and len(batch.dropped) == 1
    assert sort_batch(value, new).ids == [RID.replace("e5", "f5")]
