"""Faults injected on purpose: crafted and truncated checkpoints, runs killed at chosen moments.

Every rerun after a fault ends where an uninterrupted run ends (the same history, bit for bit), no
payload in a crafted file ever runs, and a bad file costs one line, never a traceback.
"""

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TRAIN = ["--dataset", "synthetic", "--epochs", "2", "--warmup-epochs", "1", "--wandb", "disabled"]


def cli(*args, env=None):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, env=env, timeout=600)


class Payload:
    """Unpickling this runs `touch <marker>`: what a crafted checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted_checkpoint(path, marker):
    """A torch checkpoint (torch.save's zip format) whose unpickling would run the payload."""
    import torch

    torch.save({"state_dict": {}, "epoch": 1, "payload": Payload(marker)}, path)


def train(backend, out, *extra, env=None):
    result = cli("train", "resnet-8", "--backend", backend, *TRAIN, "--out", str(out), "--json", *extra, env=env)
    assert result.returncode == 0, result.stderr
    return result


def said(result):
    """The lines the study itself wrote on stderr (a Keras run also has TensorFlow's start-up notes there)."""
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if "retraining the run" in line or "checkpoint" in line]


def history(out):
    """The run's numbers, epoch by epoch (history.csv without its timings)."""
    import csv

    with open(out / "history.csv") as handle:
        return [
            {k: v for k, v in row.items() if k not in ("wall_s", "train_img_per_s")} for row in csv.DictReader(handle)
        ]


KILL_AT_SUMMARY = """
import os, sys
import study.schemas.base as schemas
write = schemas.atomic_write_text
schemas.atomic_write_text = lambda path, text: os._exit(9) if path.name == "summary.json" else write(path, text)
from study.cli import main
sys.exit(main(sys.argv[1:]))
"""


def killed_before_summary(backend, out):
    """A run killed right after its last epoch's checkpoint, before summary.json (what it left behind)."""
    args = ["train", "resnet-8", "--backend", backend, *TRAIN, "--out", str(out), "--json"]
    killed = subprocess.run([sys.executable, "-c", KILL_AT_SUMMARY, *args], capture_output=True, text=True, timeout=600)
    assert killed.returncode == 9 and not (out / "summary.json").exists(), killed.stderr
    return args


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted run of each twin: what every rerun after a fault must end as."""
    root = tmp_path_factory.mktemp("uninterrupted")
    return {backend: history(train(backend, root / backend) and root / backend) for backend in ("keras", "lightning")}


@pytest.mark.parametrize("force_unsafe", [True])
def test_a_crafted_lightning_checkpoint_never_runs_and_the_run_retrains(tmp_path, finished, force_unsafe):
    """Resuming a run loads its checkpoint with weights_only, whatever TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD
    says; the crafted file is set aside in one line and the run retrains to the uninterrupted result."""
    out, marker = tmp_path / "run", tmp_path / "marker"
    killed_before_summary("lightning", out)
    crafted_checkpoint(out / "model.ckpt", marker)
    env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"} if force_unsafe else None
    result = train("lightning", out, env=env)
    assert not marker.exists(), "the checkpoint's payload ran"
    (line,) = said(result)
    assert "model.ckpt: not a readable checkpoint (UnpicklingError); retraining the run from epoch 0" in line
    summary = json.loads(result.stdout)
    assert summary["restarted"] == line and summary["resumed_from_epoch"] == 0
    assert (out / "model.ckpt.corrupt").exists() and history(out) == finished["lightning"]


@pytest.mark.quick
def test_the_probe_loads_a_crafted_checkpoint_safely_even_when_forced(tmp_path, monkeypatch):
    from lightning_impl.port import checkpoint_state
    from study.core.errors import CheckpointError

    marker = tmp_path / "marker"
    crafted_checkpoint(tmp_path / "model.ckpt", marker)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="model.ckpt: not a readable checkpoint"):
        checkpoint_state(tmp_path / "model.ckpt")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointError):
        checkpoint_state(tmp_path / "plain.pkl")  # a bare pickle, not torch's format
    assert not marker.exists()


@pytest.mark.parametrize("cut", [-1])
def test_a_truncated_keras_resume_point_retrains_the_run(tmp_path, finished, cut):
    out = tmp_path / "run"
    killed_before_summary("keras", out)
    resume = out / "resume.npz"
    data = resume.read_bytes()
    resume.write_bytes(data[: cut if cut >= 0 else len(data) // 2])
    result = train("keras", out)
    (line,) = said(result)
    assert "resume.npz: not a readable resume point (" in line and "retraining the run from epoch 0" in line
    assert json.loads(result.stdout)["resumed_from_epoch"] == 0 and history(out) == finished["keras"]


@pytest.mark.parametrize("backend", ["keras"])  # the Lightning twin's kill mid-training: tests/test_resume.py
def test_a_run_killed_just_before_its_summary_resumes_instead_of_retraining(tmp_path, finished, backend):
    """Killed between saving its checkpoint and writing summary.json, a run restores every epoch on the
    rerun (the Keras twin kept its resume point for this) and ends as the uninterrupted run."""
    out = tmp_path / "run"
    result = cli(*killed_before_summary(backend, out))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["resumed_from_epoch"] == 2 and summary["attempts"] == 2
    assert history(out) == finished[backend] and not (out / "resume.npz").exists()


# -- collect: a safe merge of several machines' folders ----------------------------------------------

POINT = ["--dataset", "synthetic", "--backends", "lightning", "--archs", "plain", "--depths", "8", "--seeds", "0,1",
         "--epochs", "1", "--warmup-epochs", "0", "--wandb", "disabled"]  # fmt: skip


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    """Two "machines" of one study, each with one finished run (seed 0 on A, seed 1 on B), and A with
    its gradient-flow tables."""
    root = tmp_path_factory.mktemp("machines")
    for folder, seed in (("A", 0), ("B", 1)):
        result = cli("run-point", *POINT, "--out", str(root / folder), "--backend", "lightning", "--arch", "plain",
                     "--depth", "8", "--seed", str(seed))  # fmt: skip
        assert result.returncode == 0, result.stderr
    result = cli("gradflow", "--depths", "8", "--dataset", "synthetic", "--out", str(root / "A"))
    assert result.returncode == 0, result.stderr
    return root


def merged_rows(folder):
    import csv

    with open(folder / "results.csv") as handle:
        return sorted((row["run_key"], row["final_train_error"]) for row in csv.DictReader(handle))


def test_collect_merges_one_study_once_and_refuses_what_is_not_its_own(tmp_path, machines):
    a, b = tmp_path / "A", tmp_path / "B"
    shutil.copytree(machines / "A", a, symlinks=True)
    shutil.copytree(machines / "B", b, symlinks=True)
    run_b = next(p for p in (b / "runs").iterdir() if p.is_dir() and not p.name.startswith("."))
    shutil.copytree(run_b, b / "runs" / "renamed-copy")  # the same run under another name
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not the study's")
    (b / "runs" / "a-link").symlink_to(outside, target_is_directory=True)  # a link out of the source
    (run_b / "leak.txt").symlink_to(outside / "secret.txt")  # a link out of a run folder: left behind
    bad = b / "runs" / "crafted-run"
    bad.mkdir()
    (bad / "summary.json").write_text('{"backend": "lightning"}')

    merged = tmp_path / "merged"
    result = cli("collect", str(merged), str(a), str(b))
    assert result.returncode == 0, result.stderr
    notes = result.stderr.strip().splitlines()
    assert len(notes) == 2 and "Traceback" not in result.stderr
    assert any("a-link: a link or a file, not a run folder; not collected" in n for n in notes)
    assert any("crafted-run/summary.json: lacks arch" in n for n in notes)
    rows = merged_rows(merged)
    assert len(rows) == 2 and not (merged / "runs" / "renamed-copy").exists()  # counted once
    assert not list(merged.rglob("secret.txt")) and not list(merged.rglob("leak.txt"))
    assert all(p.resolve().is_relative_to(merged.resolve()) for p in merged.rglob("*") if p.is_symlink())
    assert (merged / "gradflow.csv").read_bytes() == (a / "gradflow.csv").read_bytes()  # carried along
    assert cli("collect", str(merged), str(a), str(b)).returncode == 0 and merged_rows(merged) == rows

    other = tmp_path / "other"
    shutil.copytree(a, other)
    study = json.loads((other / "study.json").read_text())
    (other / "study.json").write_text(json.dumps(study | {"study_id": "another-study"}))
    before = (merged / "results.csv").read_text()
    refused = cli("collect", str(merged), str(other))
    assert refused.returncode == 2 and "different studies" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and (merged / "results.csv").read_text() == before


def test_a_collect_killed_mid_copy_is_completed_by_rerunning_it(tmp_path, machines):
    """What a kill during a run's copy leaves (a half-copied hidden folder) never counts as a run; the
    rerun removes it and ends as an uninterrupted collect."""
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    assert cli("collect", str(clean), str(machines / "A"), str(machines / "B")).returncode == 0
    assert cli("collect", str(broken), str(machines / "A")).returncode == 0
    run_b = next(p for p in (machines / "B" / "runs").iterdir() if p.is_dir() and not p.name.startswith("."))
    half = broken / "runs" / f".incoming-{run_b.name}"
    half.mkdir()
    (half / "summary.json").write_text("")  # a kill mid-copy: a 0-byte summary, no checkpoint
    result = cli("collect", str(broken), str(machines / "A"), str(machines / "B"))
    assert result.returncode == 0, result.stderr
    assert merged_rows(broken) == merged_rows(clean) and not half.exists()


# -- a full disk, a read-only folder, a kill during analyze ----------------------------------------------


@pytest.mark.quick
def test_a_write_that_fails_on_a_full_disk_leaves_the_old_file_and_no_debris(tmp_path, monkeypatch):
    import errno

    import study.files
    from study.core.errors import UserError

    path = tmp_path / "verdict.json"
    path.write_text("the previous verdict")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(study.files.os, "fsync", full)
    with pytest.raises(UserError, match="cannot write .*verdict.json: No space left on device"):
        study.files.atomic_write_text(path, "a new verdict")
    assert path.read_text() == "the previous verdict" and [p.name for p in tmp_path.iterdir()] == ["verdict.json"]


def analyzed(folder):
    return {name: (folder / name).read_text() for name in ("verdict.json", "report.md")}


@pytest.fixture(scope="module")
def study_folder(machines, tmp_path_factory):
    folder = tmp_path_factory.mktemp("analyzed") / "study"
    assert cli("collect", str(folder), str(machines / "A"), str(machines / "B")).returncode == 0
    assert cli("analyze", str(folder)).returncode == 0
    return folder


def test_analyze_on_a_full_disk_is_one_line_and_keeps_the_last_report(tmp_path, study_folder, capsys, monkeypatch):
    import errno

    import study.files
    from study.cli import main

    folder = tmp_path / "study"
    shutil.copytree(study_folder, folder)
    before = analyzed(folder)
    monkeypatch.setattr(study.files.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
    assert main(["analyze", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space" in err[0]
    assert analyzed(folder) == before and not list(folder.rglob(".*.json.*")) and not list(folder.rglob(".*.png.*"))


def test_a_real_full_disk(tmp_path):
    """A 1 MiB tmpfs (where this machine lets a test mount one): run's first write fails in one line."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 4096))
        result = cli("gradflow", "--depths", "8", "--dataset", "synthetic", "--out", str(disk / "g"))
        assert result.returncode == 2 and "No space left on device" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not list(disk.rglob(".gradflow*"))
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


@pytest.mark.quick
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_study_folder_is_one_line(tmp_path, study_folder):
    folder = tmp_path / "study"
    shutil.copytree(study_folder, folder)
    before = analyzed(folder)
    folder.chmod(0o555)
    try:
        result = cli("analyze", str(folder))
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    finally:
        folder.chmod(0o755)
    assert analyzed(folder) == before


@pytest.mark.parametrize("after", [0.8, 2.5])
def test_analyze_killed_at_any_moment_then_rerun_ends_as_if_never_killed(tmp_path, study_folder, after):
    import signal
    import time

    folder = tmp_path / "study"
    shutil.copytree(study_folder, folder)
    for name in ("verdict.json", "report.md", "report.html"):
        (folder / name).unlink()
    shutil.rmtree(folder / "figures")
    process = subprocess.Popen([sys.executable, "-m", "study", "analyze", str(folder)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    time.sleep(after)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    if (folder / "verdict.json").exists():  # whatever exists is whole
        json.loads((folder / "verdict.json").read_text())
    assert cli("analyze", str(folder)).returncode == 0
    assert analyzed(folder) == analyzed(study_folder)
    debris = [p for p in folder.rglob(".*") if p.name.startswith((".verdict", ".report", ".error_vs"))]
    assert not debris, debris  # a kill's temporary files are cleared by the rerun


@pytest.mark.quick
def test_a_truncated_or_crafted_keras_checkpoint_is_a_checkpoint_error(tmp_path):
    """The probe's Keras load (safe mode) names the file in one line instead of a traceback."""
    from keras_impl.port import checkpoint_state
    from study.core.errors import CheckpointError

    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(CheckpointError, match="model.keras: not a readable Keras checkpoint"):
        checkpoint_state(tmp_path / "model.keras")
    (tmp_path / "empty.keras").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.keras"):
        checkpoint_state(tmp_path / "empty.keras")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie waits for whoever adopted it)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_compare_killed_with_sigkill_takes_its_worker_with_it(tmp_path):
    """`compare` SIGKILLed while its worker measures (SIGKILL runs no cleanup): the worker, in a session
    of its own, ends by itself within seconds instead of measuring on, orphaned, beside a rerun."""
    import signal
    import time

    args = [
        "compare",
        "--backends",
        "lightning",
        "--specs",
        "resnet-8",
        "--batch",
        "2",
        "--steps",
        "20000",
        "--repeats",
        "1",
        "--out",
        str(tmp_path / "cmp"),
        "--wandb",
        "disabled",
    ]  # a silent epoch of ~100 s
    process = subprocess.Popen([sys.executable, "-m", "study", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    worker = None
    try:
        for line in process.stdout:  # the worker starts right after this line
            if "lightning: measuring" in line:
                break
        deadline = time.monotonic() + 60
        while worker is None and time.monotonic() < deadline:
            children = open(f"/proc/{process.pid}/task/{process.pid}/children").read().split()
            worker = int(children[0]) if children else None
            time.sleep(0.1)
        assert worker is not None and alive(worker), "compare started no worker"
        time.sleep(10)  # inside its first timed epoch, which prints nothing for a minute or more
        assert alive(worker), "the worker ended before the test could kill compare"
        process.kill()
        process.wait()
        deadline = time.monotonic() + 10
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(worker), "the worker outlived compare"
    finally:
        if process.poll() is None:
            process.kill()
        if worker is not None and alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_two_collects_into_one_folder_never_interleave(tmp_path, machines):
    """A second collect into a folder another one holds waits (one line), writes nothing meanwhile,
    then completes the merge; two started together both succeed with every run merged once."""
    import fcntl
    import time

    held = tmp_path / "held"
    held.mkdir()
    fd = os.open(held, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a first collect would hold it
    try:
        process = subprocess.Popen([sys.executable, "-m", "study", "collect", str(held), str(machines / "A")],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(10)  # ten seconds with the folder held: a collect starts and merges in less
        assert process.poll() is None and not list(held.iterdir()), "the second collect did not wait"
    finally:
        os.close(fd)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert err.strip().splitlines() == [f"{held}: another collect is merging into it; waiting until it ends"]
    assert len(merged_rows(held)) == 1

    together = tmp_path / "together"
    command = [sys.executable, "-m", "study", "collect", str(together)]
    first = subprocess.Popen([*command, str(machines / "A")], stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen([*command, str(machines / "B")], stderr=subprocess.PIPE, text=True)
    assert first.wait(timeout=120) == 0 and second.wait(timeout=120) == 0, (first.stderr.read(), second.stderr.read())
    first.stderr.close(), second.stderr.close()
    clean = tmp_path / "clean"
    assert cli("collect", str(clean), str(machines / "A"), str(machines / "B")).returncode == 0
    assert merged_rows(together) == merged_rows(clean)


HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "[click](http://127.0.0.1:9/steal)"]


def rendered_markup(markdown_text: str) -> list[tuple[str, list]]:
    """The tags, with their attributes, a Markdown renderer that passes raw HTML through (as GitHub's
    and most editors' previews do, before sanitizing) makes of `markdown_text`."""
    from html.parser import HTMLParser

    from markdown_it import MarkdownIt

    tags = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append((tag, attrs))

    Tags().feed(MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown_text))
    return tags


def test_a_crafted_folders_strings_reach_no_report_as_markup(tmp_path, study_folder):
    """A run key and layer names of a crafted folder (free text: no vocabulary to check them against)
    reach neither report as markup: rendered, report.md holds no script, event handler or link, and
    report.html never holds them raw. (Named columns, the data set, activation and norm, are checked
    against their vocabulary instead: `tests/test_bad_input.py`.)"""
    folder = tmp_path / "study"
    shutil.copytree(study_folder, folder)
    for name in ("verdict.json", "report.md", "report.html"):
        (folder / name).unlink()
    run_key = next(line.split(",")[0] for line in (folder / "results.csv").read_text().splitlines()[1:])
    for table in folder.glob("*.csv"):
        text = table.read_text().replace(run_key, HOSTILE[1] + HOSTILE[2])
        table.write_text(text.replace(",conv1,", f",{HOSTILE[0]}conv1,").replace(",fc,", f",{HOSTILE[2]},"))
    assert cli("analyze", str(folder)).returncode == 0
    markdown_text, page = (folder / "report.md").read_text(), (folder / "report.html").read_text()
    tags = rendered_markup(markdown_text)
    assert {tag for tag, _ in tags} <= {"h1", "h2", "h3", "p", "strong", "em", "code", "table", "thead", "tbody",
                                        "tr", "th", "td", "img", "ul", "ol", "li", "hr", "br"}, tags  # fmt: skip
    assert all(name in ("src", "alt", "style") and "javascript" not in (value or "") for _, attrs in tags
               for name, value in attrs), tags  # fmt: skip
    assert not any(h in page for h in HOSTILE[:2])  # the page escapes what it shows (its data as JSON)


@pytest.mark.quick
def test_the_markdown_check_sees_raw_html():
    assert ("script", []) in rendered_markup("a <script>alert(1)</script> b")
    assert any(tag == "a" for tag, _ in rendered_markup("[click](http://127.0.0.1:9/steal)"))
    from study.report.document import Document, md

    assert rendered_markup(md("a <script>alert(1)</script> [click](http://127.0.0.1:9/steal) b")) == [("p", [])]
    doc = Document()  # every block of a report: a heading, a paragraph, a table, a figure's caption
    doc.heading(HOSTILE[0])
    doc.para(" ".join(HOSTILE) + " **kept bold**")
    doc.table([HOSTILE[1], "n"], [[HOSTILE[2], "a|b\n<i>"]])
    doc.figure(Path("figures/x.png"), HOSTILE[1])
    tags = rendered_markup(doc.markdown())
    assert {tag for tag, _ in tags} == {"h2", "p", "strong", "table", "thead", "tbody", "tr", "th", "td", "img", "em"}
    assert [attrs for tag, attrs in tags if tag == "img"] == [[("src", "figures/x.png"), ("alt", HOSTILE[1])]]


def test_the_analysis_run_publishes_what_analyze_read_without_reading_again(tmp_path, study_folder, monkeypatch):
    """`publish_study` logs the results table and the explorer's charts `analyze_folder` read, validated
    and computed: no table is read (or validated, or computed) a second time."""
    import pandas as pd

    import study.verdicts.inputs as inputs
    from study.report.analysis import analyze_folder
    from study.tracking.dashboard import publish_study

    folder = tmp_path / "study"
    shutil.copytree(study_folder, folder)
    analysis = analyze_folder(folder)
    (folder / "results.csv").write_text("run_key\n<script>changed after the analysis</script>\n")

    def no_read(*args, **kwargs):
        raise AssertionError("publish_study read a table again")

    monkeypatch.setattr(pd, "read_csv", no_read)
    monkeypatch.setattr(inputs, "read_study_folder", no_read)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-home"))
    run_id = publish_study(analysis, "offline")
    assert run_id and run_id.startswith("analysis-")
