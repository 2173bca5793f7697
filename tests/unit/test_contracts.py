"""The XCom contracts between the tasks: a value pushed by another release fails at once, saying what to do."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic_core import from_json

from phone_sync import contracts
from phone_sync.contracts import VERSION, Batch, BatchRow, ContractError, Extracted, ExtractedRow, RowRef, WriteBack
from phone_sync.crypto import DamagedSealError, Sealer, new_key
from phone_sync.errors import SetupError

SEALER = Sealer.from_text(new_key())
BATCH = Batch(
    index=0,
    label="rows 2-2",
    rows=[BatchRow(row=2, identifier="3303000011112222", phone="+6281234567890", effective=date(2026, 11, 20))],
)


def test_a_value_round_trips_sealed() -> None:
    assert Batch.from_xcom(BATCH.to_xcom(SEALER), SEALER) == BATCH


@pytest.mark.parametrize(
    ("value", "said"),
    [
        # What the release before contracts pushed: positional rows, no contract name or version.
        ({"index": 0, "label": "rows 2-2", "rows": [[2, "3303", "+62812", "2026-11-20", None]]}, "another release"),
        ({**BATCH.to_xcom(SEALER), "v": VERSION + 1}, rf"contract version {VERSION + 1}"),
        ({**BATCH.to_xcom(SEALER), "contract": "write_back"}, "expected XCom contract 'batch', found 'write_back'"),
        ({**BATCH.to_xcom(SEALER), "index": "first"}, r"is damaged \(fields: index\)"),
        ("not even a dict", "another release"),
    ],
)
def test_another_shape_fails_at_once_with_one_clear_message(value: object, said: str) -> None:
    with pytest.raises(ContractError, match=said) as raised:
        Batch.from_xcom(value, SEALER)
    assert isinstance(raised.value, SetupError), "retrying cannot change an XCom: the task fails without retries"
    assert "3303" not in str(raised.value)


def test_only_contracts_without_patient_data_travel_unsealed() -> None:
    assert not WriteBack.sealed_fields
    assert Batch.sealed_fields == {"rows"}
    with pytest.raises(ContractError, match="must be opened with a key"):
        Batch.from_xcom(BATCH.to_xcom(SEALER))


def _extracted(rows: int) -> Extracted:
    return Extracted(
        rows=[ExtractedRow(row=n, identifier=f"{n * 2654435761 % 10**16:016d}", phone=n * 7919) for n in range(rows)],
        missing_feed_date=[RowRef(row=n, identifier=str(n)) for n in range(3)],
    )


@pytest.mark.parametrize("rows", [0, 1, 2, 3, 5])
def test_the_json_lines_sealed_are_the_whole_contract(rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contracts, "JSON_CHUNK_ITEMS", 2)  # chunk edges: none, one short, exact, several
    value = _extracted(rows)
    head, *lines = (from_json(line) for line in b"".join(value._json_lines()).split(b"\n"))
    assert all(len(items) <= 2 for _, items in lines), "no line holds more than a chunk of a sealed list"
    whole = {**head, "rows": [r for n, items in lines if n == "rows" for r in items]}
    whole["missing_feed_date"] = [r for n, items in lines if n == "missing_feed_date" for r in items]
    assert whole == value.model_dump(mode="json")
    assert Extracted.from_xcom(value.to_xcom(SEALER), SEALER) == value
    streamed = list(Extracted.streamed(value.to_xcom(SEALER), SEALER))
    assert all(len(items) <= 2 for _, items in streamed), "opened a chunk at a time, for clean_phones"
    assert [r for n, items in streamed if n == "rows" for r in items] == value.rows
    assert [r for n, items in streamed if n == "missing_feed_date" for r in items] == value.missing_feed_date


def test_only_a_contract_without_readable_fields_is_streamed() -> None:
    with pytest.raises(TypeError, match="readable fields"):
        next(Batch.streamed(BATCH.to_xcom(SEALER), SEALER))


@pytest.mark.parametrize(
    ("lines", "said"),
    [
        ([b"{}", b'["rows",[{"row":"second","identifier":"3303","phone":1}]]'], r"fields: rows\.0\.row\b"),
        ([b"{}", b'["identifier",["3303"]]'], "not its JSON lines"),
        ([b"{}", b'["rows",[{"row":2,"identif'], "not its JSON lines"),
        ([b'["rows",[]]', b'["rows",[]]'], "not its JSON lines"),
        ([b"{}", b'["rows",[]]'], r"fields: missing_feed_date\)"),
    ],
)
def test_damaged_json_lines_fail_at_once_naming_the_field_never_the_data(lines: list[bytes], said: str) -> None:
    wire = {**_extracted(0).to_xcom(SEALER), "sealed": SEALER.seal_json(b"\n".join(lines))}
    with pytest.raises(ContractError, match=said) as raised:
        Extracted.from_xcom(wire, SEALER)
    assert "3303" not in str(raised.value)
    with pytest.raises(ContractError, match=said) as raised:
        list(Extracted.streamed(wire, SEALER))
    assert "3303" not in str(raised.value)


def test_a_large_value_is_sealed_in_pieces_that_only_open_whole_and_in_order() -> None:
    value = _extracted(40_000)
    wire = value.to_xcom(SEALER)
    pieces = wire["sealed"].split(".")
    assert len(pieces) > 3, "one Fernet token of a whole 100,000-row value costs extract_rows 15 MiB at its peak"
    assert Extracted.from_xcom(wire, SEALER) == value
    for damaged in (pieces[:-1], pieces[1:], [pieces[1], pieces[0], *pieces[2:]], [*pieces, pieces[-1]]):
        with pytest.raises(DamagedSealError, match="is damaged") as raised:
            Extracted.from_xcom({**wire, "sealed": ".".join(damaged)}, SEALER)
        assert isinstance(raised.value, SetupError)
