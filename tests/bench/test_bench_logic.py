"""The benchmark's own logic: ratios and verdicts, the chart, the article's cleaner as ported."""

from __future__ import annotations

import struct
from pathlib import Path

from bench import report
from bench.baseline import clean_phone_number
from bench.stages import fhir_timeline


def result(name: str, rows: int, seconds: float, fhir: int, sheets: int, lost: int, rss: float) -> dict:
    return {
        "name": name,
        "rows": rows,
        "seconds": seconds,
        "rows_per_second": rows / seconds,
        "wall_10k_seconds": 10_000 * seconds / rows,
        "fhir_requests": fhir,
        "sheets_requests": sheets,
        "statuses_lost": lost,
        "task_rss_mib": {"a": rss, "b": rss - 10},
    }


RESULTS = {
    "baseline": result("article per-row loop", 400, 130.0, 820, 400, 260, 60.0),
    "scheduler": {
        **result("whole DAG, scheduler (LocalExecutor)", 10_000, 50.0, 570, 6, 0, 190.0),
        "floor": {"name": "empty DAG", "seconds": 40.0, "task_rss_mib": {"a": 140.0}},
        "fhir_tokens": 95,
        "xcom": {"sealed_bytes": 2_000_000, "plain_bytes": 5_000_000},
        "sheets_busiest_minute": 61,
        "sheets_throttled": 0,
        "repeats": [{"ratio": 1.25}, {"ratio": 1.6}, {"ratio": 1.1}],
    },
    "sheets_quota_per_minute": 60,
    "memory": [
        {"rows": 100_000, "extract_peak_rss_mib": 250.0, "clean_peak_rss_mib": 300.0, "write_back_peak_rss_mib": 210.0}
    ],
}


def test_ratios_are_against_the_baseline_rate_and_the_floor_time():
    lines = {line["system"]: line for line in report.rows_table(RESULTS)}
    sched = lines["whole DAG, scheduler (LocalExecutor)"]
    assert round(sched["vs_baseline"], 1) == round((10_000 / 50) / (400 / 130), 1)
    assert sched["vs_floor"] == 50 / 40
    assert sched["fhir_per_1000"] == 57
    assert lines["empty DAG"]["vs_floor"] == 1.0
    assert sched["tokens_per_run"] == 95
    assert round(sched["xcom_kib_per_1000"], 1) == round(200_000 / 1024, 1)
    assert "x floor" in report.format_table(report.rows_table(RESULTS))


def test_verdicts_name_what_is_missed_with_the_figure():
    verdicts = {v["target"]: v for v in report.verdicts(RESULTS)}
    assert verdicts["rows/s vs baseline (scheduler run)"]["met"]
    name = "end to end vs empty-DAG floor (whole DAG, scheduler (LocalExecutor))"
    assert verdicts[name] == {
        "target": name,
        "measured": 1.25,
        "goal": "<= 1.5x",
        "met": True,
        "note": "median of 3 runs: 1.10, 1.25, 1.60",
    }
    sheets = verdicts["Sheets requests in the run's busiest minute (whole DAG, scheduler (LocalExecutor))"]
    assert (sheets["measured"], sheets["met"]) == (61, False), "one over the quota is a miss"
    memory = verdicts["extract, clean and write-back of 100,000 rows (peak of the three task processes)"]
    assert (memory["measured"], memory["met"]) == (300.0, False)
    assert "[MISSED]" in report.format_verdicts(report.verdicts(RESULTS))


def test_chart_is_a_png_of_every_system(tmp_path: Path):
    path = tmp_path / "chart.png"
    assert report.chart(path, RESULTS, "subtitle")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    assert width > 600
    assert height > 150
    assert not report.chart(tmp_path / "none.png", {}, "subtitle"), "nothing measured, nothing drawn"


def test_the_ported_cleaner_keeps_the_articles_behaviour():
    assert clean_phone_number("0812-3456-7890") == "081234567890"
    assert clean_phone_number(81234567890) == "081234567890"  # missing leading zero restored
    assert clean_phone_number("0812345678, 0813999999") == "0812345678"
    assert clean_phone_number("6.28123E+12") == "6281230000000"  # invented zeros: the article's bug, kept
    assert clean_phone_number("0812") is None


def test_the_committed_summary_has_no_module_lists() -> None:
    """Each task process's imported modules (hundreds of names) stay in bench/results, not in last_run.json."""
    from bench.run import _summary

    tasks = {"process_batch": {"count": 2, "modules": ["airflow", "phone_sync"]}}
    floor_tasks = {"process_batch": {"count": 2, "modules": ["airflow"]}}
    results = {"rows": 10, "scheduler": {"name": "s", "tasks": tasks, "floor": {"name": "f", "tasks": floor_tasks}}}
    summary = _summary(results)
    assert summary["scheduler"]["tasks"]["process_batch"] == {"count": 2}
    assert summary["scheduler"]["floor"]["tasks"]["process_batch"] == {"count": 2}


def test_the_plain_size_of_a_sealed_xcom_is_its_contract_opened() -> None:
    from datetime import date

    from bench.metadb import opened
    from phone_sync.contracts import Batch, Batches, BatchRef, BatchRow
    from phone_sync.crypto import Sealer, new_key

    sealer = Sealer.from_text(new_key())
    row = BatchRow(row=2, identifier="33", phone="+62812", effective=date.today())
    batch = Batch(index=0, label="rows 2-2", rows=[row])
    ref = BatchRef(index=0, label="rows 2-2", size=1).to_xcom()

    (batches,) = Batches.by_key([batch], identifier_column=1, columns={"identifier": 1}).values()
    plain = opened({"wrapped": [batches.to_xcom(sealer), ref]}, sealer)["wrapped"]

    assert plain[0]["batches"][0]["rows"] == [
        {"row": 2, "identifier": "33", "phone": "+62812", "effective": date.today().isoformat(), "note": None,
         "repeated": False}
    ]
    assert plain[0]["contract"] == "batches"
    assert "sealed" not in plain[0]
    assert plain[1] == ref


def test_the_wall_time_of_a_rate_bound_run_is_split_where_it_went() -> None:
    log = [{"at": 102.0 + 0.5 * n} for n in range(9)]  # nine requests, 102.0 to 106.0 s, two a second
    run = {"queued_at": 100.0, "ended_at": 110.0, "batch_spans": [(101.0, 104.0), (101.0, 106.0), (105.0, 106.0)]}

    timeline = fhir_timeline(log, run, rate=2.0, slots=2)

    # 9 requests at 2 a second: 4.5 s at the rate; 4.0 s from the first to the last leaves none unused (the
    # parts overlap by the last request's own half second).
    assert timeline == {"before_first_request": 2.0, "at_rate": 4.5, "rate_unused": 0.0,
                        "after_last_request": 4.0, "slots_empty": 0.5}  # one slot of two empty 104-105 s
