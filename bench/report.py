"""Turning stage results into the table, the target verdicts, the JSON summary and the chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.png import bar_chart

BUDGET_MIB = 256
TARGETS = {
    "speedup_vs_baseline": 20.0,  # at least, rows/s
    "fhir_per_100_rows": 10.0,  # at most
    "sheets_per_run": 5,  # at most, per 10,000-row run
    "statuses_lost": 0,
    "scheduler_vs_floor": 1.5,  # at most
    "task_rss_mib": BUDGET_MIB,
    "extract_clean_100k_mib": BUDGET_MIB,
}


def per_1000(count: float, rows: int) -> float:
    return 1000 * count / rows if rows else 0.0


def rows_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per measured system, with the ratios the issue asks for."""
    base = results.get("baseline")
    floor = (results.get("scheduler") or {}).get("floor")
    lines = []
    for key in ("baseline", "inprocess", "dagtest", "scheduler"):
        result = results.get(key)
        if not result:
            continue
        lines.append(_line(result, base, floor))
        if key == "scheduler" and floor:
            lines.append({
                "system": floor["name"], "rows_per_second": None, "wall_10k_seconds": None,
                "seconds": floor["seconds"], "fhir_per_1000": None, "sheets_per_1000": None,
                "sheets_per_run": None, "statuses_lost": None, "peak_task_rss_mib": max(floor["task_rss_mib"].values()),
                "vs_baseline": None, "vs_floor": 1.0,
            })
    return lines


def _line(result: dict[str, Any], base: dict[str, Any] | None, floor: dict[str, Any] | None) -> dict[str, Any]:
    rows = result["rows"]
    return {
        "system": result["name"],
        "rows": rows,
        "seconds": result["seconds"],
        "rows_per_second": result["rows_per_second"],
        "wall_10k_seconds": result["wall_10k_seconds"],
        "fhir_per_1000": per_1000(result["fhir_requests"], rows),
        "sheets_per_1000": per_1000(result["sheets_requests"], rows),
        "sheets_per_run": result["sheets_requests"] if "baseline" not in result["name"] else None,
        "statuses_lost": result["statuses_lost"],
        "peak_task_rss_mib": max(result["task_rss_mib"].values()),
        "vs_baseline": result["rows_per_second"] / base["rows_per_second"] if base else None,
        "vs_floor": result["seconds"] / floor["seconds"] if floor and "scheduler" in result["name"] else None,
    }


def _fmt(value: Any, spec: str = ".1f") -> str:
    if value is None:
        return "-"
    return format(value, spec) if isinstance(value, float) else str(value)


def format_table(lines: list[dict[str, Any]]) -> str:
    headers = ["system", "rows/s", "wall 10k (s)", "FHIR/1k rows", "Sheets/1k rows", "Sheets/run",
               "statuses lost", "peak task RSS (MiB)", "x baseline", "x floor"]
    body = [[
        line["system"], _fmt(line["rows_per_second"]), _fmt(line["wall_10k_seconds"] or line.get("seconds"), ".0f"),
        _fmt(line["fhir_per_1000"], ".0f"), _fmt(line["sheets_per_1000"], ".2f"), _fmt(line["sheets_per_run"]),
        _fmt(line["statuses_lost"]), _fmt(line["peak_task_rss_mib"]), _fmt(line["vs_baseline"]),
        _fmt(line["vs_floor"], ".2f"),
    ] for line in lines]
    widths = [max(len(str(row[i])) for row in [headers, *body]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    return "\n".join([line(headers), "-+-".join("-" * w for w in widths), *(line(row) for row in body)])


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured figure and met / missed."""
    out: list[dict[str, Any]] = []

    def add(name: str, measured: Any, target: str, met: bool, note: str = "") -> None:
        out.append({"target": name, "measured": measured, "goal": target, "met": met, "note": note})

    base = results.get("baseline")
    project = [results[k] for k in ("inprocess", "dagtest", "scheduler") if results.get(k)]
    sched = results.get("scheduler")
    if base and sched:
        ratio = sched["rows_per_second"] / base["rows_per_second"]
        add("rows/s vs baseline (scheduler run)", round(ratio, 1), ">= 20x", ratio >= TARGETS["speedup_vs_baseline"])
    for result in project:
        fhir = 100 * result["fhir_requests"] / result["rows"]
        add(f"FHIR requests per 100 rows ({result['name']})", round(fhir, 2), "<= 10", fhir <= 10)
        add(f"Sheets requests per run ({result['name']})", result["sheets_requests"], "<= 5",
            result["sheets_requests"] <= TARGETS["sheets_per_run"])
        add(f"statuses lost ({result['name']})", result["statuses_lost"], "0", result["statuses_lost"] == 0)
    if base:
        add("statuses lost (article loop, sample)", base["statuses_lost"], "0 (baseline, for contrast)",
            base["statuses_lost"] == 0)
    if sched and sched.get("floor"):
        ratio = sched["seconds"] / sched["floor"]["seconds"]
        met = ratio <= TARGETS["scheduler_vs_floor"]
        add("scheduler end to end vs empty-DAG floor", round(ratio, 2), "<= 1.5x", met)
        peak = max(sched["task_rss_mib"].values())
        add("peak task process RSS at 10,000 rows (scheduler)", peak, f"<= {BUDGET_MIB} MiB", peak <= BUDGET_MIB)
    for probe in results.get("memory", []):
        peak = max(probe["extract_peak_rss_mib"], probe["clean_peak_rss_mib"])
        add(f"extract + clean of {probe['rows']:,} rows (peak of the two task processes)", peak,
            f"<= {BUDGET_MIB} MiB", peak <= BUDGET_MIB)
    return out


def format_verdicts(items: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  [{'met' if v['met'] else 'MISSED'}] {v['target']}: {v['measured']} (target {v['goal']})"
        + (f" - {v['note']}" if v["note"] else "") for v in items
    )


def format_memory(probes: list[dict[str, Any]]) -> str:
    lines = ["rows     | extract peak / after imports (MiB) | clean peak / after imports (MiB) "
             "| XCom extract/clean (MiB)"]
    for p in probes:
        lines.append(
            f"{p['rows']:>8,} | {p['extract_peak_rss_mib']:>7.1f} / {p['extract_import_rss_mib']:<7.1f} "
            f"({p['extract_seconds']:.1f} s)   | {p['clean_peak_rss_mib']:>7.1f} / {p['clean_import_rss_mib']:<7.1f} "
            f"({p['clean_seconds']:.1f} s) | {p['extract_xcom_mib']:.1f} / {p['clean_xcom_mib']:.1f}"
        )
    return "\n".join(lines)


def chart(path: Path, results: dict[str, Any], machine: str) -> None:
    """Wall time for 10,000 rows per system (the baseline extrapolated from its sample)."""
    bars = []
    colors = {"baseline": (196, 64, 64), "inprocess": (70, 130, 180), "dagtest": (70, 110, 200),
              "scheduler": (60, 150, 90)}
    labels = {"baseline": "article loop", "inprocess": "batch logic only", "dagtest": "DAG, dag.test()",
              "scheduler": "DAG, scheduler"}
    for key in ("baseline", "inprocess", "dagtest", "scheduler"):
        result = results.get(key)
        if result:
            seconds = result["wall_10k_seconds"]
            bars.append((labels[key], seconds, f"{seconds:,.0f} S  ({result['rows_per_second']:,.0f} ROWS/S)",
                         colors[key]))
    sched = results.get("scheduler")
    if sched and sched.get("floor"):
        seconds = sched["floor"]["seconds"]
        bars.append(("empty DAG floor", seconds, f"{seconds:,.0f} S", (150, 150, 150)))
    if bars:
        bar_chart(path, "Phone sync: wall time for 10,000 rows", machine, bars)
