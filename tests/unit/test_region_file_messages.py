"""What an operator reads about a region file: every problem at once, in words that say how to fix it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phone_sync.regions import RegionConfigError, load_region, load_regions
from tests.unit.test_config import MINIMAL, with_change, write

TEMPLATE = Path(__file__).resolve().parents[2] / "include" / "regions" / "_template.json"


def problems_of(tmp_path: Path, data: object) -> list[str]:
    with pytest.raises(RegionConfigError) as caught:
        load_region(write(tmp_path, data))
    return caught.value.problems


def test_a_secret_looking_key_does_not_hide_the_files_other_problems(tmp_path: Path) -> None:
    data = with_change("fhir.token", "s3cr3t-value")
    data["sheets"]["api_key"] = "another"
    data["batch_size"] = 0
    data["timezone"] = "Mars/Olympus"
    problems = problems_of(tmp_path, data)
    fields = [p.split(":")[0] for p in problems]
    assert {"fhir.token", "sheets.api_key", "batch_size", "timezone"} <= set(fields)
    assert all("s3cr3t-value" not in p and "another" not in p for p in problems)


@pytest.mark.parametrize("header", ["", "   "])
@pytest.mark.parametrize("column", ["identifier", "phone", "status", "feed_date"])
def test_an_empty_header_text_is_refused(tmp_path: Path, column: str, header: str) -> None:
    problems = problems_of(tmp_path, with_change(f"sheets.columns.{column}", header))
    assert any(p.startswith(f"sheets.columns.{column}: ") and "empty header text" in p for p in problems), problems


@pytest.mark.parametrize("value", ["01/02/2026", "2026-13-01", "yesterday", 20260101])
def test_a_bad_start_date_says_the_expected_format(tmp_path: Path, value: object) -> None:
    (problem,) = problems_of(tmp_path, with_change("start_date", value))
    assert problem.startswith("start_date: expected a date as YYYY-MM-DD"), problem


def test_files_starting_with_an_underscore_are_not_regions(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    (tmp_path / "_template.json").write_text("{not even json")
    (tmp_path / "_draft.json").write_text(json.dumps(MINIMAL))
    configs, errors = load_regions(tmp_path)
    assert [c.region for c in configs] == ["banyumas"]
    assert errors == []


def test_the_template_is_a_valid_preview_region_once_copied_to_a_real_name(tmp_path: Path) -> None:
    """The README's steps: copy the template to <slug>.json and replace its placeholder slug."""
    text = TEMPLATE.read_text(encoding="utf-8")
    template = json.loads(text)
    slug = template["region"]
    path = tmp_path / "banyumas.json"
    path.write_text(text.replace(slug, "banyumas"), encoding="utf-8")
    config = load_region(path)
    assert config.mode == "preview"
    assert config.fhir.conn_id == "fhir_banyumas"
    assert config.sheets.conn_id == "google_sheets_banyumas"
    assert "demo" not in config.tags
    assert config.fhir_requests_per_second <= 10  # not the demo's 50 requests/s
    demo = json.loads((TEMPLATE.parent / "demo.json").read_text(encoding="utf-8"))
    assert template["sheets"]["columns"] != demo["sheets"]["columns"]  # not the demo sheet's headers
