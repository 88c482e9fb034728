"""The comparison table: Markdown for people, JSON for machines, a PNG for the eye."""
from __future__ import annotations

from pathlib import Path

from edgelite.figures import pyplot, write_figure
from edgelite.files import write_atomic, write_json

COLUMNS = [  # (key, heading, format)
    ("name", "model", "{}"),
    ("size_mb", "size MB", "{:.2f}"),
    ("p50_ms", "p50 ms", "{:.2f}"),
    ("p90_ms", "p90 ms", "{:.2f}"),
    ("speedup", "speed-up", "{:.3g}x"),
    ("top1", "top-1", "{:.1%}"),
    ("top5", "top-5", "{:.1%}"),
    ("agreement", "top-1 agreement", "{:.1%}"),
    ("max_abs_diff", "max abs dp", "{:.1e}"),
    ("cold_start_s", "cold start s", "{:.2f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
]


def add_speedups(rows: list[dict]) -> list[dict]:
    """Speed-up of each row's p50 against the first Keras row (the compiled reference)."""
    base = next((r.get("p50_ms") for r in rows if r.get("format") == "keras"), None)
    for row in rows:
        if base and row.get("p50_ms"):
            row["speedup"] = base / row["p50_ms"]
    return rows


def markdown(rows: list[dict]) -> str:
    """The table, leaving out columns that no row has."""
    columns = [c for c in COLUMNS if any(row.get(c[0]) is not None for row in rows)]
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---" if k == "name" else "---:" for k, _, _ in columns) + "|"
    lines = [head, rule]
    for row in rows:
        cells = [fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> Path | None:
    """Latency against top-1 accuracy (or agreement), one labeled point per row; None where
    matplotlib is not installed (the device)."""
    try:
        plt = pyplot()
    except ImportError:
        return None

    metric = "top1" if all(r.get("top1") is not None for r in rows) else "agreement"
    points = [r for r in rows if r.get("p50_ms") and r.get(metric) is not None]
    if not points:
        return None
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = "osD^vP*X"
    for i, r in enumerate(points):
        size = f", {r['size_mb']:.2f} MB" if r.get("size_mb") else ""
        ax.scatter(r["p50_ms"], r[metric] * 100, s=60, marker=markers[i % len(markers)], alpha=0.8,
                   label=f"{r['name']}{size}")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8, loc="best")
    low, high = ax.get_ylim()
    ax.set_ylim(low, min(high, 100.5))
    ax.set_xlabel("latency p50, ms (batch 1, log scale)")
    ax.set_ylabel("top-1 accuracy %" if metric == "top1" else "top-1 agreement with Keras %")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    write_figure(fig, path)
    plt.close(fig)
    return path


def csv_text(rows: list[dict]) -> str:
    """Every flat figure of every row (nested ones such as the threads sweep are flattened)."""
    import csv
    import io

    flat = []
    for row in rows:
        item = {}
        for key, value in row.items():
            if isinstance(value, dict):
                item.update({f"{key}_{k}": v for k, v in value.items()})
            else:
                item[key] = value
        flat.append(item)
    fields = list(dict.fromkeys(k for item in flat for k in item))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(flat)
    return buffer.getvalue()


def save(rows: list[dict], out_dir: Path, extra: dict, title: str) -> dict:
    """results.json, .csv, .md and .png in out_dir; returns the paths."""
    table = markdown(rows)
    paths = {
        "json": write_json(out_dir / "results.json", {**extra, "rows": rows}),
        "csv": write_atomic(out_dir / "results.csv", csv_text(rows)),
        "markdown": write_atomic(out_dir / "results.md", f"# {title}\n\n{table}"),
        "plot": plot(rows, out_dir / "results.png", title),
    }
    return {k: str(v) for k, v in paths.items() if v}


