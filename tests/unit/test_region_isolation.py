"""Whatever lands in the regions folder, under whatever name, the real DAG file parses without an import
error: every good region keeps its DAG and each bad file shows as its own config-error DAG naming it.

Checked through a real ``DagBag`` parse of ``dags/phone_sync_regions.py``, and each DAG serialized as
the DAG processor does (a DAG that fails to serialize is an import error for the whole file too).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from phone_sync.dag_factory import CONFIG_ERROR_TAG, build_all
from phone_sync.regions import MAX_FILE_BYTES, REGIONS_DIR_ENV, load_regions, printable, region_files
from tests.regions import PROJECT_REGIONS

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
GOOD = [path.name for path in region_files(PROJECT_REGIONS)]
GOOD_IDS = {config.dag_id for config in load_regions(PROJECT_REGIONS)[0]}
PIPELINE = ["extract_rows", "clean_phones", "process_batch", "write_back_statuses", "run_report"]
VALID_DAG_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
HASH = "[0-9a-f]{8}"


def copy_of(region: str) -> Callable[[Path], None]:
    return lambda path: shutil.copy(PROJECT_REGIONS / f"{region}.json", path)


def year_one(path: Path) -> None:
    """Valid for the region model, refused by Airflow itself (start_date before UTC's year 1)."""
    data = json.loads((PROJECT_REGIONS / "demo.json").read_text(encoding="utf-8"))
    data.update(region="year_one", start_date="0001-01-01")
    data["sheets"].update(conn_id="google_sheets_year_one", spreadsheet_id="year-one-spreadsheet")
    data["fhir"]["conn_id"] = "fhir_year_one"
    path.write_text(json.dumps(data), encoding="utf-8")


def make(path: Path, how: bytes | str | Callable[[Path], None]) -> None:
    if isinstance(how, bytes):
        path.write_bytes(how)
    elif isinstance(how, str):
        {"dir": path.mkdir, "fifo": lambda: os.mkfifo(path), "dangling": lambda: path.symlink_to("gone.json")}[how]()
    else:
        how(path)


NOT_JSON = b"{ region: demo"
# file name -> (how to make it, dag_id pattern, words its description must hold)
BAD_FILES: dict[bytes, tuple[bytes | str | Callable[[Path], None], str, list[str]]] = {
    b"demo copy.json": (copy_of("demo"), f"phone_sync__demo_copy__{HASH}", ["does not match", "fhir.conn_id", "demo"]),
    b"lombok_barat (1).json": (copy_of("lombok_barat"), f"phone_sync__lombok_barat__1___{HASH}", ["sheets.conn_id"]),
    b"empty.json": (b"", "phone_sync__empty", ["not valid JSON"]),
    b"latin1.json": ('{"display_name": "\u00e9"}'.encode("latin-1"), "phone_sync__latin1", ["not UTF-8"]),
    b"not_json.json": (NOT_JSON, "phone_sync__not_json", ["not valid JSON"]),
    b"deep.json": (b"[" * 200_000, "phone_sync__deep", ["nested more than"]),
    b"deep_object.json": (b'{"a": ' * 400 + b"1" + b"}" * 400, "phone_sync__deep_object", ["nested more than"]),
    b"huge.json": (b" " * (MAX_FILE_BYTES + 1), "phone_sync__huge", ["larger than"]),
    b"long_number.json": (b"1" * 5000, "phone_sync__long_number", ["number too long"]),
    b"folder.json": ("dir", "phone_sync__folder", ["a directory"]),
    b"dangling.json": ("dangling", "phone_sync__dangling", ["symbolic link to a missing file"]),
    b"pipe.json": ("fifo", "phone_sync__pipe", ["not a regular file"]),
    b"year_one.json": (year_one, "phone_sync__year_one", ["Airflow refused", "OverflowError"]),
    "wilayah é ✓.json".encode(): (NOT_JSON, f"phone_sync__wilayah______{HASH}", ["not valid JSON"]),
    b"\xff\xfe latin name.json": (NOT_JSON, f"phone_sync_____latin_name__{HASH}", ["not valid JSON"]),
    b"~$demo.json": (copy_of("demo"), f"phone_sync____demo__{HASH}", ["does not match"]),
    b".json": (NOT_JSON, f"phone_sync____{HASH}", []),
    b"-demo.json": (NOT_JSON, "phone_sync__-demo", []),
    b"a..b.json": (NOT_JSON, f"phone_sync__a_.b__{HASH}", []),
    b"new\nline.json": (NOT_JSON, f"phone_sync__new_line__{HASH}", []),
    b"<img src=x onerror=alert(1)> `*_[x].json": (
        NOT_JSON,
        f"phone_sync___img_src_x_onerror_alert_1_______x___{HASH}",
        [],
    ),
    b"x" * 250 + b".json": (NOT_JSON, f"phone_sync__{'x' * 228}__{HASH}", []),
    # Collide after sanitising: with each other, with a valid region, and with one only by letter case.
    b"same name.json": (NOT_JSON, f"phone_sync__same_name__{HASH}", []),
    b"same+name.json": (NOT_JSON, f"phone_sync__same_name__{HASH}", []),
    b"lombok barat.json": (NOT_JSON, f"phone_sync__lombok_barat__{HASH}", []),
    b"Demo.json": (NOT_JSON, f"phone_sync__Demo__{HASH}", []),
}


def write_bad_files(folder: Path, files: dict[bytes, Any]) -> None:
    for name, how in files.items():
        make(Path(os.fsdecode(os.fsencode(folder) + b"/" + name)), how)


def parse(monkeypatch: pytest.MonkeyPatch, regions: Path) -> DagBag:
    """The real DAG file parsed as the DAG processor does, each DAG serialized as it would be stored."""
    monkeypatch.setenv(REGIONS_DIR_ENV, str(regions))
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    for dag in bag.dags.values():
        json.dumps(DagSerialization.to_dict(dag), ensure_ascii=False).encode("utf-8")  # strict, as the DB stores it
    return bag


def shown_name(name: bytes) -> str:
    """How a file name appears in the UI: verbatim when it is printable UTF-8, escaped otherwise."""
    text = os.fsdecode(name)  # bytes that are not UTF-8 become surrogates, which are not printable
    return text if text.isprintable() else printable(text)


def config_error_dags(bag: DagBag) -> dict[str, Any]:
    return {dag_id: dag for dag_id, dag in bag.dags.items() if CONFIG_ERROR_TAG in dag.tags}


def rendered_text(markdown: str) -> str:
    """What an operator reads in the UI's docs panel: the Markdown rendered (CommonMark), tags stripped."""
    return html.unescape(re.sub(r"<[^>]*>", "", MarkdownIt("commonmark").render(markdown)))


def assert_isolated(bag: DagBag, bad: list[bytes]) -> dict[bytes, str]:
    """No import error; every good region is its own pipeline; each bad file has its own config-error DAG."""
    assert bag.import_errors == {}
    for dag_id in GOOD_IDS:
        assert [t.task_id for t in bag.dags[dag_id].topological_sort()] == PIPELINE, dag_id
    errors = config_error_dags(bag)
    assert len(errors) == len(bad), sorted(errors)
    ids: dict[bytes, str] = {}
    for name in bad:
        shown = shown_name(name)
        [dag_id] = [i for i, dag in errors.items() if dag.description.startswith(f"Invalid region file {shown}: ")]
        dag = errors[dag_id]
        assert VALID_DAG_ID.match(dag_id), dag_id
        assert ".." not in dag_id
        assert shown in dag.dag_display_name
        assert f"Region file {shown} is invalid" in rendered_text(dag.doc_md)
        assert not dag.timetable.can_be_scheduled
        assert dag.is_paused_upon_creation
        ids[name] = dag_id
    assert len({dag_id.lower() for dag_id in bag.dag_ids}) == len(bag.dag_ids), "ids differing only in case"
    return ids


class Parsed(NamedTuple):
    bag: DagBag
    ids: dict[bytes, str]  # bad file name -> its config-error dag_id
    folder: Path


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parsed]:
    """The shipped regions plus every kind of bad file at once, parsed once for this module's plain tests."""
    folder = tmp_path_factory.mktemp("regions")
    for name in GOOD:
        shutil.copy(PROJECT_REGIONS / name, folder)
    write_bad_files(folder, {name: how for name, (how, _, _) in BAD_FILES.items()})
    with pytest.MonkeyPatch.context() as monkeypatch:
        bag = parse(monkeypatch, folder)
        yield Parsed(bag, assert_isolated(bag, list(BAD_FILES)), folder)


def test_good_regions_survive_every_kind_of_bad_file(every_kind: Parsed) -> None:
    bag = every_kind.bag
    assert bag.import_errors == {}
    assert set(bag.dag_ids) - set(config_error_dags(bag)) == GOOD_IDS
    for dag_id in GOOD_IDS:
        assert CONFIG_ERROR_TAG not in bag.dags[dag_id].tags


@pytest.mark.parametrize("name", list(BAD_FILES), ids=[os.fsdecode(n)[:40] for n in BAD_FILES])
def test_each_bad_file_is_its_own_config_error_dag(every_kind: Parsed, name: bytes) -> None:
    bag, ids, _ = every_kind
    _, id_pattern, words = BAD_FILES[name]
    assert re.fullmatch(id_pattern, ids[name]), ids[name]
    dag = bag.dags[ids[name]]
    for word in words:
        assert word in dag.description, dag.description
        assert word in rendered_text(dag.doc_md)
    assert [t.task_id for t in dag.tasks] == ["region_file_invalid"]


def test_config_error_dag_ids_are_stable_across_parses(every_kind: Parsed) -> None:
    assert set(build_all(every_kind.folder)) == set(every_kind.bag.dag_ids)


def test_the_copy_names_the_region_it_clashes_with(every_kind: Parsed) -> None:
    bag, ids, _ = every_kind
    text = rendered_text(bag.dags[ids[b"demo copy.json"]].doc_md)
    for field in ("fhir.conn_id", "sheets.conn_id", "sheets.spreadsheet_id"):
        assert f"{field}: " in text
    assert "is also used by region demo (file demo.json), which keeps it" in text


# --- property: any names, any bytes -------------------------------------------------------------------


def _fits(stem: bytes) -> bytes:
    """A stem that makes a legal file name: no '/' or NUL, at most 250 bytes before '.json'."""
    return stem.replace(b"/", b"_").replace(b"\0", b"_")[:250]


STEMS = st.one_of(
    st.text(st.characters(exclude_characters="/\0", exclude_categories=["Cs"]), max_size=40).map(str.encode),
    st.binary(max_size=40),
    st.text(max_size=260).map(lambda text: text.encode("utf-8", "surrogatepass")),  # cut mid-character below
    st.tuples(st.sampled_from([n.removesuffix(".json") for n in GOOD]), st.sampled_from([" copy", " (1)", ".bak", "é"]))
    .map(lambda parts: "".join(parts).encode()),
    st.sampled_from([b"", b".", b"..", b"-", b"~$demo", b"Demo", b"lombok barat", b"`*_[x](y)<b>&amp;", b"a\nb"]),
    st.text(" +_.aAé", min_size=1, max_size=3).map(str.encode),  # names that collide once sanitised
).map(_fits)


def copy_with(name: str, key: str, value: Any) -> bytes:
    """A shipped region file with one key changed (and ``region`` still naming the original)."""
    data = json.loads((PROJECT_REGIONS / name).read_text(encoding="utf-8"))
    return json.dumps({**data, key: value}).encode()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
MAKES = st.one_of(
    st.sampled_from([b"", b" " * (MAX_FILE_BYTES + 1), b"1" * 5000, "dir", "fifo", "dangling"]),
    st.binary(max_size=200),
    st.text(max_size=100).map(lambda text: text.encode("utf-8", "surrogatepass")),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.integers(1, 100_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.sampled_from(GOOD).map(lambda name: (PROJECT_REGIONS / name).read_bytes()),  # an unedited copy: clashes
    st.builds(copy_with, st.sampled_from(GOOD), st.sampled_from(["batch_size", "tags", "sheets", "start_date"]),
              JSON_VALUES),
    st.sampled_from(GOOD).map(lambda name: lambda path: path.symlink_to(PROJECT_REGIONS / name)),
)
# Names starting with "_" are not regions (templates, drafts): they are skipped, not shown.
BAD = st.dictionaries(STEMS.map(lambda stem: stem + b".json"), MAKES, min_size=1, max_size=3).filter(
    lambda files: not set(files) & {name.encode() for name in GOOD} and not any(n.startswith(b"_") for n in files)
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=BAD)
def test_any_file_under_any_name_shows_as_its_own_config_error_dag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: dict[bytes, Any]
) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        for name in GOOD:
            shutil.copy(PROJECT_REGIONS / name, folder)
        write_bad_files(Path(folder), bad)
        bag = parse(monkeypatch, Path(folder))
        ids = assert_isolated(bag, list(bad))
        assert {ids[name] for name in bad} | GOOD_IDS == set(build_all(Path(folder))), "ids changed between parses"
