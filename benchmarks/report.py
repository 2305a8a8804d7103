"""Turning a run record into figures: the table, the JSON file, the chart, BENCHMARKS.md.

Ratios are always time(column) / time(native), for throughput workloads too, so that in the
table and the chart higher always means slower.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import statistics

COLUMN_ORDER = ["native", "bindfs", "sshfs", "bridgefs"]
COLORS = {"bindfs": "#4c72b0", "sshfs": "#dd8452", "bridgefs": "#55a868"}


def finalize(run: dict) -> None:
    """Add median/min/max, MB/s and the ratio to native to every cell of ``run``."""
    for w in run["workloads"]:
        native = w["columns"].get("native", {})
        native_med = _median(native.get("times"))
        for cell in w["columns"].values():
            times = cell.get("times") or []
            if not times:
                continue
            cell["median_s"] = statistics.median(times)
            cell["min_s"] = min(times)
            cell["max_s"] = max(times)
            if w.get("bytes"):
                mb = w["bytes"] / 1e6
                cell["mbps_median"] = mb / cell["median_s"]
                cell["mbps_min"] = mb / cell["max_s"]
                cell["mbps_max"] = mb / cell["min_s"]
            if native_med:
                cell["ratio"] = cell["median_s"] / native_med


def _median(xs):
    return statistics.median(xs) if xs else None


def _dur(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 0.995 else f"{s:.2f} s"


def _range(lo: float, hi: float, median: float | None = None) -> str:
    """min–max in the unit the median is shown in (ms below a second), or plain for MB/s."""
    if median is None:
        return f"{lo:.0f}–{hi:.0f}"
    if median < 0.995:
        return f"{lo * 1000:.0f}–{hi * 1000:.0f}"
    return f"{lo:.2f}–{hi:.2f}"


def cell_text(w: dict, col: str, run: dict) -> str:
    status = run["columns"].get(col, {})
    cell = w["columns"].get(col)
    if status.get("status") == "unavailable":
        return status.get("label") or "unavailable"
    if w.get("skip"):
        return "skipped"
    if not cell or not cell.get("times"):
        if cell and cell.get("errors"):
            return "failed"
        return "column failed" if status.get("status") == "failed" else "—"
    if w.get("bytes"):
        text = f"{cell['mbps_median']:.0f} MB/s [{_range(cell['mbps_min'], cell['mbps_max'])}]"
    else:
        text = (
            f"{_dur(cell['median_s'])} [{_range(cell['min_s'], cell['max_s'], cell['median_s'])}]"
        )
    if col != "native" and "ratio" in cell:
        text += f" ×{cell['ratio']:.1f}" if cell["ratio"] < 99.5 else f" ×{cell['ratio']:.0f}"
    if cell.get("errors"):
        text += f" ({len(cell['errors'])} failed)"
    return text


def columns_of(run: dict) -> list[str]:
    return [c for c in COLUMN_ORDER if c in run["columns"]]


def table(run: dict) -> str:
    cols = columns_of(run)
    # The last column, the 1-minute load average as each workload began, shows which rows
    # ran on a busy machine (other jobs, or the columns' own daemons).
    head = f"| load: {run['load']['mode']} | " + " | ".join(cols) + " | load avg |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for w in run["workloads"]:
        la = f"{w['loadavg_start'][0]:.1f}" if w.get("loadavg_start") else ""
        cells = ["skipped"] * len(cols) if w.get("skip") else [cell_text(w, c, run) for c in cols]
        lines.append(f"| {w['key']} {w['title']} | " + " | ".join(cells) + f" | {la} |")
    return "\n".join(lines)


def column_notes(run: dict) -> list[str]:
    notes = []
    for col in columns_of(run):
        st = run["columns"][col]
        if st.get("status") != "ok":
            notes.append(f"{col}: {st['status']}: {st.get('reason')}")
    for w in run["workloads"]:
        for col, cell in w["columns"].items():
            for err in cell.get("errors", [])[:1]:
                notes.append(f"{w['key']} {col}: {err}")
    loads = [w["loadavg_start"][0] for w in run["workloads"] if w.get("loadavg_start")]
    loads.append(run["load"].get("loadavg_end", [0])[0])
    cores = run["machine"]["nproc"]
    if run["load"]["mode"] == "idle" and max(loads) > cores:
        notes.append(
            f"the 1-minute load average reached {max(loads):.1f} on {cores} cores during "
            f"this idle run: the columns' own daemons account for up to about "
            f"{cores}, anything above that is other jobs on the machine"
        )
    return notes


# --- bridgefs request counts --------------------------------------------------------------------


def _counts(section) -> dict[str, float]:
    """{"LOOKUP": {"count": 3, ...}} or {"LOOKUP": 3} -> {"LOOKUP": 3}."""
    out = {}
    if isinstance(section, dict):
        for k, v in section.items():
            if isinstance(v, dict) and isinstance(v.get("count"), (int, float)):
                out[k] = v["count"]
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = v
    return out


def stats_summary(stats: list) -> str:
    """One line for a workload's bridgefs stats: medians over the repetitions."""
    good = [s for s in stats if isinstance(s, dict)]
    if not good:
        bad = next((s for s in stats if isinstance(s, str)), "no stats")
        return bad
    parts = []
    for section in sorted({k for s in good for k in s}):
        values = [s.get(section) for s in good]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            parts.append(f"{section}: {statistics.median(values):.0f}")  # a plain counter
            continue
        per_run = [_counts(v) for v in values]
        names = sorted({n for c in per_run for n in c})
        med = {n: statistics.median(c.get(n, 0) for c in per_run) for n in names}
        total = statistics.median(sum(c.values()) for c in per_run)
        top = [f"{n} {v:.0f}" for n, v in sorted(med.items(), key=lambda kv: -kv[1])[:6] if v]
        parts.append(f"{section}: {total:.0f}" + (f" ({', '.join(top)})" if top else ""))
    return "; ".join(parts) or "no counters"


def stats_table(run: dict) -> str | None:
    rows = []
    for w in run["workloads"]:
        cell = w["columns"].get("bridgefs")
        if cell and cell.get("stats"):
            rows.append(f"| {w['key']} | {stats_summary(cell['stats'])} |")
    if not rows:
        return None
    return (
        "| workload | bridgefs requests per run (median; top opcodes) |\n|---|---|\n"
        + "\n".join(rows)
    )


# --- files --------------------------------------------------------------------------------------


def write_json(run: dict, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run, indent=1, sort_keys=False) + "\n")


def chart(run: dict, path: pathlib.Path) -> str | None:
    """A PNG of the ratios, grouped by workload; None if written, else why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        return "matplotlib is not installed (pip install -r benchmarks/requirements.txt)"
    drawn = [c for c in columns_of(run) if c != "native"]
    rows = [w for w in run["workloads"] if any("ratio" in w["columns"].get(c, {}) for c in drawn)]
    cols = [c for c in drawn if any("ratio" in w["columns"].get(c, {}) for w in rows)]
    if not rows or not cols:
        return "no ratios to draw (native or the other columns are missing)"
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(rows) + 2), 5.6), dpi=110)
    width = 0.8 / len(cols)
    for i, col in enumerate(cols):
        xs, ys = [], []
        for j, w in enumerate(rows):
            r = w["columns"].get(col, {}).get("ratio")
            if r:
                xs.append(j + (i - (len(cols) - 1) / 2) * width)
                ys.append(r)
        status = run["columns"][col]
        label = col if status.get("status") == "ok" else f"{col} ({status['status']})"
        bars = ax.bar(xs, ys, width, label=label, color=COLORS.get(col))
        for b, y in zip(bars, ys):
            ax.annotate(
                f"{y:.1f}" if y < 99.5 else f"{y:.0f}",
                (b.get_x() + b.get_width() / 2, y),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 1),
                textcoords="offset points",
            )
    ax.axhline(1.0, color="black", linewidth=0.8, label="native = 1")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ratios = [
        w["columns"][c]["ratio"] for w in rows for c in cols if "ratio" in w["columns"].get(c, {})
    ]
    # Room for the labels above the tallest bar; below 1 for a column faster than native.
    ax.set_ylim(min(0.5, min(ratios) / 1.5), max(2.0, max(ratios) * 1.6))
    ax.set_xticks(range(len(rows)), [f"{w['key']}\n{w.get('short', '')}" for w in rows], fontsize=8)
    ax.set_ylabel("time / native time (log scale; lower is better)")
    m = run["machine"]
    ax.set_title(
        f"bridgefs benchmark, load {run['load']['mode']}, {run['started'][:10]}, "
        f"{m['nproc']} cores, kernel {m['kernel']}",
        fontsize=10,
        pad=24,
    )
    missing = [f"{c}: {run['columns'][c]['status']}" for c in drawn if c not in cols]
    # Above the axes, where no bar can hide under it.
    ax.legend(
        fontsize=8,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=len(cols) + 2,
        frameon=False,
        title="; ".join(missing) or None,
        title_fontsize=7,
    )
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return None


def markdown_section(run: dict, chart_rel: str | None) -> str:
    m, load = run["machine"], run["load"]
    la0 = " ".join(f"{x:.2f}" for x in load["loadavg_start"])
    la1 = " ".join(f"{x:.2f}" for x in load["loadavg_end"])
    p0, p1 = load.get("pressure_start", {}), load.get("pressure_end", {})
    psi = (
        f"; CPU/IO pressure (avg10) at start {p0.get('cpu', 0):.0f}%/{p0.get('io', 0):.0f}%, "
        f"at end {p1.get('cpu', 0):.0f}%/{p1.get('io', 0):.0f}%"
        if p0
        else ""
    )
    ds = run["dataset"]
    out = [
        f"Run of {run['started']} ({run['duration_s'] / 60:.1f} min): load mode "
        f"**{load['mode']}**; machine: {m['nproc']} cores ({m['cpu']}), "
        f"{m['mem_gib']:.0f} GiB, kernel {m['kernel']}; load average at start {la0}, "
        f"at end {la1}{psi}; {run['options']['repeat']} repetitions; dataset "
        f"{ds['files']} files in {ds['dirs']} directories ({ds['tree_mib']:.0f} MiB), "
        f"big file {ds['big_mib']} MiB.",
        "",
        f"Command: `{run['command']}`",
        "",
        "Median [min–max] of the repetitions; ×N is the median time divided by the native median.",
        "",
        table(run),
    ]
    notes = column_notes(run) + run.get("notes", [])
    if notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    if chart_rel:
        out += ["", f"![time relative to native, load {load['mode']}]({chart_rel})"]
    st = stats_table(run)
    out += ["", "bridgefs request counts per workload:", ""]
    if st:
        out.append(st)
    else:
        reason = run["columns"].get("bridgefs", {}).get("reason") or "no bridgefs runs"
        out.append(f"none: {reason}")
    out.append("")
    out.append(
        "Versions: "
        + "; ".join(f"{c}: {v['version']}" for c, v in run["columns"].items() if v.get("version"))
        + (f" (source {run['source']})" if run.get("source") else "")
    )
    return "\n".join(out)


def update_md(run: dict, md: pathlib.Path, png: pathlib.Path | None) -> None:
    mode = run["load"]["mode"]
    begin, end = f"<!-- results:{mode}:begin -->", f"<!-- results:{mode}:end -->"
    text = md.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{md} has no {begin} ... {end} markers; nothing rewritten")
    chart_rel = None
    if png is not None:
        # The image the markdown points at lives next to the markdown, under a stable name,
        # so that committing the two together keeps them in step.
        stable = md.parent / "benchmarks" / "results" / f"latest-{mode}.png"
        if png.resolve() != stable.resolve():
            stable.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, stable)
        chart_rel = stable.relative_to(md.parent).as_posix()
    body = markdown_section(run, chart_rel)
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    md.write_text(pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text, count=1))
