"""A comparison (`compare.json`) as Markdown and as one self-contained HTML page with a chart."""

from __future__ import annotations

import html
import io

from study.compare.machine import libraries_line, machine_line
from study.report.document import md

AGREEMENT_COLUMNS = (  # quantity of `agree --json` -> column
    ("logits_train", "logits"), ("loss", "loss"), ("param_grads", "gradients"),
    ("train_loss_trajectory", "K-step losses"), ("train_final_weights", "weights after K"),
)  # fmt: skip


def _mb(value) -> str:
    return "–" if value is None else f"{value:.0f} MB"


def speed_table(result: dict) -> list[list[str]]:
    header = ["backend", "spec", "precision", "train img/s", "ratio to raw", "range", "inference img/s",
              "first step", "peak host", "peak device", "MFU"]  # fmt: skip
    rows = [header]
    for row in result["speed"]:
        low, high = row["ratio_range"]
        rows.append([
            row["backend"], row["spec"], row["precision"] + (" compiled" if row["compile"] else ""),
            f"{row['train_img_per_s']:.0f}", f"{row['ratio_to_raw']:.3f}", f"{low:.2f}–{high:.2f}",
            f"{row['infer_img_per_s']:.0f}", f"{row['first_step_s']:.1f} s", _mb(row["peak_host_mb"]),
            _mb(row["peak_device_mb"]), f"{100 * row['mfu']:.1f} %",
        ])  # fmt: skip
    return rows


def _error(value) -> str:
    return "–" if value is None else f"{value:.1e}"


def agreement_table(result: dict) -> list[list[str]]:
    rows = [["backend", "spec", "dtype", *(name for _, name in AGREEMENT_COLUMNS), "agrees"]]
    for row in result["agreement"]:
        errors = row.get("max_rel_error", {})
        verdict = "yes" if row["passed"] else f"**no**{': ' + row['error'] if row.get('error') else ''}"
        rows.append([row["backend"], row["spec"], row["dtype"], *(_error(errors.get(q)) for q, _ in AGREEMENT_COLUMNS),
                     verdict])  # fmt: skip
    return rows


def drift_table(result: dict) -> list[list[str]]:
    rows = [
        ["backend", "spec", "bf16 drift: losses", "bf16 drift: weights", "fp32 floor: losses", "fp32 floor: weights"]
    ]
    for row in result["drift"]:
        drift, floor = row["bf16_drift"], row["float32_floor"]
        rows.append([row["backend"], row["spec"], _error(drift["train_loss_trajectory"]),
                     _error(drift["train_final_weights"]), _error(floor["train_loss_trajectory"]),
                     _error(floor["train_final_weights"])])  # fmt: skip
    return rows


def _markdown_table(rows: list[list[str]]) -> list[str]:
    numeric = [all(c[:1].isdigit() or c[:1] == "–" for c in column[1:]) for column in zip(*rows, strict=True)]
    lines = ["| " + " | ".join(rows[0]) + " |", "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows[1:]]


def settings_line(result: dict) -> str:
    s = result["settings"]
    return (
        f"device {', '.join(result['devices']) or s['device']}; speed: batch {s['batch']}, {s['steps']} steps per "
        f"epoch, {s['repeats']} timed epochs after one warm-up, the twin against its raw loop epoch by epoch; "
        f"agreement: batch {s['agree_batch']}, seed {s['seed']}, {s['train_steps']} training steps "
        f"(`resnet-study agree SPEC --dtype D --keras-backend B --batch {s['agree_batch']} --seed {s['seed']} "
        f"--train-steps {s['train_steps']}` gives the same numbers)"
    )


def recommendation_lines(result: dict) -> list[str]:
    advice = result["recommendations"]
    lines = [f"- **{d['question']}**: {d['pick']}. " + "; ".join(d["evidence"]) + "." for d in advice["use_cases"]]
    lines += [f"- Not a candidate: {backend}, {why}." for backend, why in advice["excluded"].items()]
    return lines + ["", f"Rule: {advice['rule']}"]


def markdown(result: dict) -> str:
    """The comparison as Markdown (compare.md; docs/benchmarks.md holds the CPU one verbatim)."""
    lines = [
        f"Machine: {machine_line(result['machine'])}.",
        f"Libraries: {libraries_line(result['machine'])}.",
        f"Settings: {settings_line(result)}.",
        "",
        "### What to pick when",
        "",
        *recommendation_lines(result),
        "",
        "### Speed and memory",
        "",
        *_markdown_table(speed_table(result)),
        "",
        "Ratio to raw: the twin's training throughput over the framework's plainest loop on the same network, "
        "median of per-epoch pairs (range: their spread). First step: from the call of the twin's training "
        "to the end of its first step (building, tracing, compiling). Peak host: resident memory of the "
        "backend's process during the row; peak device: the GPU allocator's peak during the row (JAX's since "
        "its process started: JAX cannot reset it). MFU: training FLOPs "
        "(3 × 2 × forward MACs per image) per second over the device's peak.",
        "",
        "### Agreement with the Lightning twin",
        "",
    ]
    lines += _markdown_table(agreement_table(result)) if result["agreement"] else ["No Keras backend was compared."]
    if result["drift"]:
        lines += ["", "### bf16 mixed precision: drift from float32", "", *_markdown_table(drift_table(result))]
        lines += ["", "Drift: bf16 training against float32 training from the same weights and batches; floor: "
                  "float32 against float64 (relative errors after the K steps)."]  # fmt: skip
    if result["missing"]:
        lines += ["", "### Not measured here", ""]
        lines += [f"- {m['backend']}: {m['reason']}; install: `{m['install']}`" for m in result["missing"]]
    if result["failures"]:
        lines += ["", "### Failures", ""]
        lines += [f"- {f['backend']} {f['step']}: {f['error']}" for f in result["failures"]]
    return "\n".join(map(md, lines)) + "\n"  # what a worker or the machine reported: text, never markup


def chart_svg(result: dict) -> str:
    """Training and inference img/s per backend and network (bars; whiskers: the per-epoch range)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "resnet-study compare"  # fixed element ids: the same rows, the same page
    import matplotlib.pyplot as plt

    rows = [row for row in result["speed"] if not row["compile"]]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for axis, (value, samples, title) in zip(
        axes,
        (("train_img_per_s", "train_epochs", "training"), ("infer_img_per_s", "infer_epochs", "inference")),
        strict=True,
    ):
        labels = [f"{row['backend']}\n{row['spec']} {row['precision']}" for row in rows]
        values = [row[value] for row in rows]
        low = [row[value] - min(row[samples]) for row in rows]
        high = [max(row[samples]) - row[value] for row in rows]
        axis.bar(range(len(rows)), values, yerr=[low, high], capsize=3, color="#4c72b0")
        axis.set_xticks(range(len(rows)), labels, fontsize=7, rotation=45, ha="right")
        axis.set_ylabel("images / s")
        axis.set_title(f"{title} (median; whiskers: per-epoch range)", fontsize=9)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]  # without the XML prolog, to sit inside the page


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell.replace('**', ''))}</td>" for cell in row) + "</tr>"
                   for row in rows[1:])  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(result: dict) -> str:
    """compare.html: one file, no network (the chart is inline SVG)."""
    advice = "".join(
        f"<li><b>{html.escape(d['question'])}</b>: {html.escape(d['pick'])}. "
        f"<small>{html.escape('; '.join(d['evidence']))}</small></li>"
        for d in result["recommendations"]["use_cases"]
    )
    excluded = "".join(
        f"<li>Not a candidate: {html.escape(b)}, {html.escape(why)}</li>"
        for b, why in result["recommendations"]["excluded"].items()
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>resnet-study compare</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:first-child{text-align:left}</style>",
        "</head><body><h1>Backends compared on this machine</h1>",
        f"<p>{html.escape(machine_line(result['machine']))}<br>{html.escape(libraries_line(result['machine']))}"
        f"<br>{html.escape(settings_line(result))}</p>",
        f"<h2>What to pick when</h2><ul>{advice}{excluded}</ul>"
        f"<p><small>{html.escape(result['recommendations']['rule'])}</small></p>",
    ]
    if result["speed"]:
        parts += ["<h2>Speed and memory</h2>", chart_svg(result), _html_table(speed_table(result))]
    if result["agreement"]:
        parts += ["<h2>Agreement with the Lightning twin</h2>", _html_table(agreement_table(result))]
    if result["drift"]:
        parts += ["<h2>bf16 drift from float32</h2>", _html_table(drift_table(result))]
    missing = [f"{m['backend']}: {m['reason']}; install: {m['install']}" for m in result["missing"]]
    failures = [f"{f['backend']} {f['step']}: {f['error']}" for f in result["failures"]]
    for title, items in (("Not measured here", missing), ("Failures", failures)):
        if items:
            parts.append(f"<h2>{title}</h2><ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
    return "".join(parts) + "</body></html>\n"
