"""Turning stage results into the table, the profile, the target verdicts and the chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

BUDGET_MIB = 200
TARGETS = {
    "speedup_vs_baseline": 20.0,  # at least, rows/s
    "fhir_per_100_rows": 10.0,  # at most
    "statuses_lost": 0,
    "scheduler_vs_floor": 1.5,  # at most
    "task_rss_mib": BUDGET_MIB,
    "extract_clean_100k_mib": BUDGET_MIB,
}
PROJECT = ("inprocess", "dagtest", "scheduler", "celery", "scale")
AIRFLOW_RUNS = ("scheduler", "celery", "scale")  # stages with a floor, a task profile and metadata figures
PHASES = ("start", "parse", "prepare", "imports", "xcom_read", "unseal", "seal", "http_fhir", "http_token",
          "http_sheets", "pacing", "work", "xcom_write", "push", "push_comms", "finish", "comms_other")


def per_1000(count: float, rows: int) -> float:
    return 1000 * count / rows if rows else 0.0


def rows_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per measured system, with the ratios the issue asks for."""
    base = results.get("baseline")
    lines = []
    for key in ("baseline", *PROJECT):
        result = results.get(key)
        if not result:
            continue
        floor = result.get("floor")
        lines.append(_line(result, base, floor))
        if floor:
            lines.append({
                "system": floor["name"], "rows": result["rows"], "seconds": floor["seconds"],
                "rows_per_second": None, "wall_10k_seconds": None, "fhir_per_1000": None, "tokens_per_run": None,
                "sheets_per_run": None, "statuses_lost": None, "xcom_kib_per_1000": None,
                "peak_task_rss_mib": max(floor["task_rss_mib"].values()), "vs_baseline": None, "vs_floor": 1.0,
            })
    return lines


def _line(result: dict[str, Any], base: dict[str, Any] | None, floor: dict[str, Any] | None) -> dict[str, Any]:
    rows = result["rows"]
    xcom = result.get("xcom")
    return {
        "system": result["name"],
        "rows": rows,
        "seconds": result["seconds"],
        "rows_per_second": result["rows_per_second"],
        "wall_10k_seconds": result["wall_10k_seconds"],
        "fhir_per_1000": per_1000(result["fhir_requests"], rows),
        "tokens_per_run": result.get("fhir_tokens"),
        "sheets_per_run": result["sheets_requests"] if "baseline" not in result["name"] else None,
        "statuses_lost": result["statuses_lost"],
        "xcom_kib_per_1000": per_1000(xcom["sealed_bytes"], rows) / 1024 if xcom else None,
        "peak_task_rss_mib": max(result["task_rss_mib"].values()),
        "vs_baseline": result["rows_per_second"] / base["rows_per_second"] if base else None,
        "vs_floor": result["seconds"] / floor["seconds"] if floor else None,
    }


def _fmt(value: Any, spec: str = ".1f") -> str:
    if value is None:
        return "-"
    return format(value, spec) if isinstance(value, float) else str(value)


def grid(headers: list[str], body: list[list[str]]) -> str:
    """A plain-text table: first column left-aligned, the rest right-aligned."""
    widths = [max(len(str(row[i])) for row in [headers, *body]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    return "\n".join([line(headers), "-+-".join("-" * w for w in widths), *(line(row) for row in body)])


def format_table(lines: list[dict[str, Any]]) -> str:
    headers = ["system", "rows", "rows/s", "wall (s)", "wall 10k (s)", "FHIR/1k rows", "tokens/run", "Sheets/run",
               "statuses lost", "XCom KiB/1k rows", "peak task RSS (MiB)", "x baseline", "x floor"]
    body = [[
        line["system"], f"{line['rows']:,}", _fmt(line["rows_per_second"]), _fmt(line["seconds"], ".0f"),
        _fmt(line["wall_10k_seconds"], ".0f"), _fmt(line["fhir_per_1000"], ".0f"), _fmt(line["tokens_per_run"]),
        _fmt(line["sheets_per_run"]), _fmt(line["statuses_lost"]), _fmt(line["xcom_kib_per_1000"]),
        _fmt(line["peak_task_rss_mib"]), _fmt(line["vs_baseline"]), _fmt(line["vs_floor"], ".2f"),
    ] for line in lines]
    return grid(headers, body)


def format_bounds(result: dict[str, Any]) -> str:
    """The run beside its two lower bounds: Airflow's own floor and the FHIR time the region's rate allows."""
    floor, bound = result["floor"]["seconds"], result["fhir_bound_seconds"]
    requests = result["fhir_requests"] + result["fhir_tokens"]
    return (f"  {result['name']}: {result['seconds']:.0f} s; lower bounds: empty DAG {floor:.0f} s "
            f"(x{result['seconds'] / floor:.2f}), FHIR at the region's rate {bound:.0f} s "
            f"({requests:,} requests incl. {result['fhir_tokens']} tokens / {result['fhir_requests_per_second']:g} "
            f"per s; x{result['seconds'] / bound:.2f})" if bound else "")


def format_profile(result: dict[str, Any]) -> str:
    """Per task: where a task process's time goes (mean over its map indexes), from inside the process."""
    headers = ["task", "n", "window (s)", "queued", "TI (s)", "in proc", *PHASES, "CPU (s)", "RSS (MiB)"]
    body = []
    for task, entry in result["tasks"].items():
        profile = entry.get("profile", {})
        in_proc = entry.get("in_process_seconds")
        window = (f"{entry['first_start']:.0f}-{entry['last_end']:.0f}"
                  if entry.get("first_start") is not None else "-")
        body.append([task, str(entry["count"]), window, _fmt(entry["queued_seconds"], ".2f"),
                     _fmt(entry["ti_seconds"], ".2f"), _fmt(in_proc, ".2f"),
                     *(_fmt(profile.get(p), ".3f") for p in PHASES), _fmt(entry.get("cpu_seconds"), ".2f"),
                     _fmt(max(entry["ru_maxrss_mib"], entry["sampled_mib"]))])
    notes = ["window: first start - last end of the task's instances, seconds after the run started; queued: "
             "queued -> started; TI: started -> ended as Airflow records them (the supervisor forks before it "
             "marks the start); in proc: fork -> success listener. Phases in seconds: see bench/task_listener.py."]
    floor_batch = result["floor"]["tasks"].get("process_batch", {})
    if floor_batch.get("profile"):
        fp, fb = floor_batch["profile"], floor_batch
        notes.append(f"empty DAG's process_batch, for comparison: in proc {fb['in_process_seconds']:.2f} s "
                     f"(start {fp['start']:.3f}, parse {fp['parse']:.3f}, push_comms {fp['push_comms']:.3f}, "
                     f"finish {fp['finish']:.3f}), CPU {fb['cpu_seconds']:.2f} s, TI {fb['ti_seconds']:.2f} s")
    for name, batch in (("process_batch", result["tasks"].get("process_batch", {})), ("empty DAG's", floor_batch)):
        if batch.get("message_seconds"):
            notes.append(f"{name} supervisor round trips per process (mean count, ms): " + ", ".join(
                f"{kind} {batch['messages'][kind]:.2g} {seconds * 1000:.0f}" for kind, seconds in
                sorted(batch["message_seconds"].items(), key=lambda item: -item[1])))
    imports = {task: entry["imports"] for task, entry in result["tasks"].items() if entry.get("imports")}
    for task, times in imports.items():
        notes.append(f"{task} imports: " + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in times.items()))
    return grid(headers, body) + "\n" + "\n".join(notes)


def sealing_cost(result: dict[str, Any]) -> str:
    """Seal + unseal seconds per task beside one FHIR request's wire time."""
    batch = result["tasks"].get("process_batch", {})
    profile, calls = batch.get("profile", {}), batch.get("calls", {})
    per_request = profile.get("http_fhir", 0.0) / calls["http_fhir"] if calls.get("http_fhir") else None
    parts = [f"{task} {entry['profile']['seal'] + entry['profile']['unseal']:.4f} s"
             for task, entry in result["tasks"].items() if entry.get("profile")]
    tail = f"; one FHIR request on the wire: {per_request:.3f} s" if per_request else ""
    return "  seal + unseal CPU per task process: " + ", ".join(parts) + tail


def format_metadata(results: dict[str, Any]) -> str:
    lines = []
    for key in AIRFLOW_RUNS:
        result = results.get(key)
        if not result:
            continue
        xcom, rows = result["xcom"], result["rows"]
        growth, floor_growth = result["db_growth_mib"], result["floor"]["db_growth_mib"]
        lines.append(
            f"  {result['name']} ({rows:,} rows): XCom {xcom['sealed_bytes'] / 2**20:.2f} MiB sealed (after) vs "
            f"{xcom['plain_bytes'] / 2**20:.2f} MiB as plain JSON (before), "
            f"{per_1000(xcom['sealed_bytes'], rows) / 1024:.1f} vs {per_1000(xcom['plain_bytes'], rows) / 1024:.1f} "
            f"KiB per 1,000 rows; metadata DB growth per run: xcom {growth['xcom']:.2f} MiB + rendered fields "
            f"{growth['rendered_task_instance_fields']:.2f} MiB (empty DAG: {floor_growth['xcom']:.2f} + "
            f"{floor_growth['rendered_task_instance_fields']:.2f}); FHIR {per_1000(result['fhir_requests'], rows):.0f} "
            f"and Sheets {per_1000(result['sheets_requests'], rows):.2f} requests per 1,000 rows, "
            f"{result['fhir_tokens']} token requests")
        lines.append("  " + sealing_cost(result).strip())
    return "\n".join(lines)


def format_imports(found: dict[str, Any]) -> str:
    lines = ["Task-like import of a batch process (python -X importtime, after the task runner):"]
    for step in found["steps"]:
        top = ", ".join(f"{name} {seconds:.3f}" for name, seconds in step["by_package"].items())
        lines.append(f"  {step['step']}: {step['seconds']:.3f} s ({top})")
    lines.append(f"Imported by {found['source']} and not needed by a batch (cost of importing exactly those "
                 "modules on top of what a batch needs):")
    for group in found["unneeded"]:
        more = ", ..." if group["modules"] > len(group["examples"]) else ""
        lines.append(f"  {group['group']}: {group['seconds']:.3f} s, {group['mib']:.1f} MiB "
                     f"({group['modules']} modules: {', '.join(group['examples'])}{more})")
    total = sum(g["seconds"] for g in found["unneeded"])
    lines.append(f"  each alone, not additive (they share dependencies); sum {total:.3f} s")
    return "\n".join(lines)


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured figure and met / missed."""
    out: list[dict[str, Any]] = []

    def add(name: str, measured: Any, target: str, met: bool, note: str = "") -> None:
        out.append({"target": name, "measured": measured, "goal": target, "met": met, "note": note})

    base = results.get("baseline")
    project = [results[k] for k in PROJECT if results.get(k)]
    sched = results.get("scheduler")
    if base and sched:
        ratio = sched["rows_per_second"] / base["rows_per_second"]
        add("rows/s vs baseline (scheduler run)", round(ratio, 1), ">= 20x", ratio >= TARGETS["speedup_vs_baseline"])
    for result in project:
        fhir = 100 * result["fhir_requests"] / result["rows"]
        add(f"FHIR requests per 100 rows ({result['name']})", round(fhir, 2), "<= 10", fhir <= 10)
        quota = results.get("sheets_quota_per_minute")
        if quota and "sheets_busiest_minute" in result:
            add(f"Sheets requests in the run's busiest minute ({result['name']})", result["sheets_busiest_minute"],
                f"<= {quota} (the quota), none refused", result["sheets_busiest_minute"] <= quota
                and result["sheets_throttled"] == 0, note=f"{result['sheets_requests']} requests in the run")
        add(f"statuses lost ({result['name']})", result["statuses_lost"], "0", result["statuses_lost"] == 0)
    if base:
        add("statuses lost (article loop, sample)", base["statuses_lost"], "0 (baseline, for contrast)",
            base["statuses_lost"] == 0)
    for key in AIRFLOW_RUNS:
        result = results.get(key)
        if not result:
            continue
        ratio = result["seconds"] / result["floor"]["seconds"]
        spread = ""
        if len(result.get("repeats", [])) > 1:
            ratios = sorted(r["ratio"] for r in result["repeats"])
            spread = f"median of {len(ratios)} runs: " + ", ".join(f"{r:.2f}" for r in ratios)
        add(f"end to end vs empty-DAG floor ({result['name']})", round(ratio, 2), "<= 1.5x",
            ratio <= TARGETS["scheduler_vs_floor"], note=spread)
        peak = max(result["task_rss_mib"].values())
        add(f"peak task process RSS at {result['rows']:,} rows ({result['name']})", peak, f"<= {BUDGET_MIB} MiB",
            peak <= BUDGET_MIB)
    for probe in results.get("memory", []):
        peak = max(probe["extract_peak_rss_mib"], probe["clean_peak_rss_mib"], probe["write_back_peak_rss_mib"])
        add(f"extract, clean and write-back of {probe['rows']:,} rows (peak of the three task processes)", peak,
            f"<= {BUDGET_MIB} MiB", peak <= BUDGET_MIB)
    return out


def format_verdicts(items: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  [{'met' if v['met'] else 'MISSED'}] {v['target']}: {v['measured']} (target {v['goal']})"
        + (f" - {v['note']}" if v["note"] else "") for v in items
    )


def format_memory(probes: list[dict[str, Any]]) -> str:
    lines = ["rows     | extract peak / after imports (MiB) | clean peak / after imports (MiB) "
             "| write-back peak / after imports (MiB), statuses | XCom extract/clean (MiB)"]
    for p in probes:
        lines.append(
            f"{p['rows']:>8,} | {p['extract_peak_rss_mib']:>7.1f} / {p['extract_import_rss_mib']:<7.1f} "
            f"({p['extract_seconds']:.1f} s)   | {p['clean_peak_rss_mib']:>7.1f} / {p['clean_import_rss_mib']:<7.1f} "
            f"({p['clean_seconds']:.1f} s) | {p['write_back_peak_rss_mib']:>7.1f} / "
            f"{p['write_back_import_rss_mib']:<7.1f} ({p['write_back_seconds']:.1f} s), "
            f"{p['write_back_statuses']:,} | {p['extract_xcom_mib']:.1f} / {p['clean_xcom_mib']:.1f}"
        )
    return "\n".join(lines)


def chart(path: Path, results: dict[str, Any], subtitle: str) -> bool:
    """Wall time for 10,000 rows per system on a linear axis (the baseline extrapolated from its sample)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    bars: list[tuple[str, float, str]] = []
    labels = {"baseline": "article per-row loop", "inprocess": "batch logic, in-process", "dagtest": "DAG, dag.test()",
              "scheduler": "DAG, scheduler (Local)", "celery": "DAG, Celery, 2 workers"}
    floors = {"scheduler": "empty DAG floor (Local)", "celery": "empty DAG floor (Celery)"}
    colours = {"baseline": "#c44040", "floor": "#999999"}
    for key, label in labels.items():
        result = results.get(key)
        if not result:
            continue
        bars.append((label, result["wall_10k_seconds"], colours.get(key, "#3c7dc4")))
        if result.get("floor"):
            scaled = result["floor"]["seconds"] * 10_000 / result["rows"] if result["rows"] >= 10_000 else None
            if scaled is not None:
                bars.append((floors[key], scaled, colours["floor"]))
    if not bars:
        return False
    scaled_from = sorted({results[k]["rows"] for k in labels if results.get(k) and results[k]["rows"] != 10_000})
    if scaled_from:
        subtitle += "; measured on " + ", ".join(f"{rows:,}" for rows in scaled_from) + " rows, scaled to 10,000"
    figure, axes = pyplot.subplots(figsize=(9, 0.55 * len(bars) + 1.6), dpi=110)
    names, seconds, colors = zip(*reversed(bars), strict=True)
    drawn = axes.barh(names, seconds, color=colors)
    axes.bar_label(drawn, labels=[f"{s:,.0f} s" for s in seconds], padding=3)
    axes.set_xlabel("wall time for 10,000 rows (seconds, linear scale)")
    axes.set_xlim(0, max(seconds) * 1.15)
    axes.set_title("Phone sync: wall time for 10,000 rows (shorter is better)", loc="left")
    figure.text(0.01, 0.01, subtitle, fontsize=7, color="#555555")
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    figure.savefig(path)
    pyplot.close(figure)
    return True
