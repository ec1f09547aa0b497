"""A comparison on the W&B dashboard: one run (job type ``compare``) with the speed, agreement and
drift rows as `wandb.Table`s, a bar chart of training throughput, the machine in its config, the
picks in its summary and compare.json/compare.md as an artifact of type ``comparison``."""

from __future__ import annotations

from pathlib import Path

from study.tracking.wandb_run import start_wandb

SPEED_COLUMNS = (
    "backend", "spec", "precision", "compile", "device", "train_img_per_s", "raw_train_img_per_s", "ratio_to_raw",
    "infer_img_per_s", "first_step_s", "peak_host_mb", "peak_device_mb", "mfu",
)  # fmt: skip


def _table(rows: list[dict], columns: tuple[str, ...]):
    import wandb

    return wandb.Table(columns=list(columns), data=[[row.get(c) for c in columns] for row in rows])


def log_comparison(result: dict, mode: str, out: Path) -> str | None:
    """The W&B run of a comparison (its folder with offline runs: `out`/wandb); its id, None when disabled."""
    devices = "-".join(result["devices"]) or "none"
    run = start_wandb(
        mode, out, {"machine": result["machine"], "settings": result["settings"], "versions": result["versions"]},
        "compare", "compare", ["compare", devices], f"compare-{devices}",
    )  # fmt: skip
    if run is None:
        return None
    import wandb

    speed = [row | {"label": f"{row['backend']} {row['spec']} {row['precision']}"} for row in result["speed"]]
    speed_table = _table(speed, (*SPEED_COLUMNS, "label"))
    agreement = [
        {"backend": r["backend"], "spec": r["spec"], "dtype": r["dtype"], "passed": r["passed"],
         "largest_relative_error": max((e for e in r.get("max_rel_error", {}).values() if e is not None),
                                       default=None)}
        for r in result["agreement"]
    ]  # fmt: skip
    drift = [
        {"backend": r["backend"], "spec": r["spec"], "bf16_drift": r["bf16_drift"]["train_final_weights"],
         "float32_floor": r["float32_floor"]["train_final_weights"]}
        for r in result["drift"]
    ]  # fmt: skip
    run.log({
        "compare/speed": speed_table,
        "compare/train_img_per_s": wandb.plot.bar(speed_table, "label", "train_img_per_s", title="training img/s"),
        "compare/agreement": _table(agreement, ("backend", "spec", "dtype", "passed", "largest_relative_error")),
        "compare/drift": _table(drift, ("backend", "spec", "bf16_drift", "float32_floor")),
    })  # fmt: skip
    run.summary.update({f"pick/{d['use_case']}": d["pick"] for d in result["recommendations"]["use_cases"]})
    artifact = wandb.Artifact(f"compare-{devices}", type="comparison")
    for name in ("compare.json", "compare.md", "compare.html"):
        artifact.add_file(str(out / name))
    run.log_artifact(artifact)
    run_id = run.id
    run.finish()
    return run_id
