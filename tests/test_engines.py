"""The study on every GPU and every machine: the local runner's GPU placement and the Ray engine.

The Ray tests run a real cluster of two nodes on this machine (`ray.cluster_utils.Cluster`: raylets,
GCS and workers as processes of their own), on the loopback address only, with logical GPUs declared
(2 per node); the test stops it through the handles it started (`remove_node`, `shutdown`). The
study's driver is `resnet-study run --executor ray --address ...` in a process of its own. Every
study here is the same grid, so each result is compared with one reference: the local runner's.
"""

import csv
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from study.experiment.placement import gpu_slots, machine_gpus

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read when Ray is imported: nodes stay on 127.0.0.1
# The tests that share the reference study and the Ray cluster run in one xdist worker: one of each.
SHARED = pytest.mark.xdist_group("engines")

GRID = ["--dataset", "synthetic", "--backends", "lightning", "--depths", "8,14", "--seeds", "0,1", "--epochs", "2",
        "--wandb", "disabled"]  # fmt: skip
GRID_POINTS = 2 * 2 * 2
TIMINGS = {"wall_s", "train_img_per_s"}  # the columns that differ between two runs of one study
RAY = ["--executor", "ray", "--cpus-per-run", "1", "--gpus-per-run", "1"]


def cli(*args, env=None, timeout=600):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)  # fmt: skip


def start(*args):
    """The study in a process (and session) of its own, for a test that stops it."""
    command = [sys.executable, "-m", "study", *args]
    return subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def table(folder: Path, name: str) -> list[dict]:
    with open(folder / name) as handle:
        rows = [{k: v for k, v in row.items() if k not in TIMINGS} for row in csv.DictReader(handle)]
    return sorted(rows, key=lambda row: json.dumps(row, sort_keys=True))


def summaries(folder: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text()) for path in (folder / "runs").glob("*/summary.json")}


def assert_same_study(folder: Path, reference: Path) -> None:
    """Equal tables (timings aside) and verdicts: the same runs, computing the same numbers."""
    for name in ("results.csv", "history.csv", "lesion.csv", "norms.csv", "gradnorms.csv", "gradflow.csv"):
        assert table(folder, name) == table(reference, name), name
    assert json.loads((folder / "verdict.json").read_text()) == json.loads((reference / "verdict.json").read_text())


def shared_devices(placements: list[dict], key) -> list[tuple]:
    """Pairs of runs that trained at the same time on one machine (`key`: its node) and shared a device."""
    pairs = []
    for i, a in enumerate(placements):
        for b in placements[i + 1 :]:
            overlap = a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]
            if overlap and key(a) == key(b) and set(a["devices"]) & set(b["devices"]):
                pairs.append((a, b))
    return pairs


@pytest.mark.quick
def test_the_shared_device_check_sees_two_runs_on_one_gpu():
    """The check the placement tests rely on fails on a placement that puts two runs on one GPU."""
    one = {"started_at": 0.0, "finished_at": 2.0, "devices": ["0"], "node": "a"}
    assert shared_devices([one, one | {"started_at": 1.0, "finished_at": 3.0}], lambda p: p["node"])
    assert not shared_devices([one, one | {"started_at": 1.0, "devices": ["1"]}], lambda p: p["node"])
    assert not shared_devices([one, one | {"started_at": 2.5, "finished_at": 3.0}], lambda p: p["node"])
    assert not shared_devices([one, one | {"started_at": 1.0, "node": "b"}], lambda p: p["node"])


@pytest.mark.quick
@pytest.mark.parametrize(
    "declared, gpus",
    [("0,1", ["0", "1"]), ("3", ["3"]), ("", []), ("-1", []), ("0,-1,2", ["0"]),
     ("GPU-5a1e,GPU-77b0", ["GPU-5a1e", "GPU-77b0"])],
)  # fmt: skip
def test_the_machine_gpus_are_the_declared_list(monkeypatch, declared, gpus):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", declared)
    assert machine_gpus() == gpus


@pytest.mark.quick
def test_gpu_slots_fill_every_gpu_before_sharing_one():
    assert gpu_slots(["0", "1"], 1) == ["0", "1"]
    assert gpu_slots(["0", "1"], 2) == ["0", "1", "0", "1"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The grid by the local runner, on three declared GPUs: three workers, each given its own
    (CUDA_VISIBLE_DEVICES, before any framework starts); the twins see no GPU here and train on the CPU
    (one thread each, as Ray's runs below: the same numbers)."""
    out = tmp_path_factory.mktemp("local") / "study"
    result = cli("run", *GRID, "--out", str(out), env={"CUDA_VISIBLE_DEVICES": "4,6,9"})
    assert result.returncode == 0, result.stderr
    return out


@SHARED
def test_the_local_runner_gives_each_worker_its_own_gpu(reference):
    placements = [s["placement"] for s in summaries(reference).values()]
    assert len(placements) == GRID_POINTS
    for placement in placements:
        placement["devices"] = placement["cuda_visible_devices"].split(",")
    devices = {p["pid"]: p["cuda_visible_devices"] for p in placements}
    assert set(devices.values()) <= {"4", "6", "9"} and all(len(p["devices"]) == 1 for p in placements)
    assert len(devices) >= 2, "runs trained in several workers (one also measures the gradient flow)"
    assert len(set(devices.values())) == len(devices), "each worker has a GPU of its own"
    assert len({(p["pid"], p["cuda_visible_devices"]) for p in placements}) == len(devices), "and keeps it"
    assert not shared_devices(placements, lambda p: p["host"])


# -- Ray ---------------------------------------------------------------------------------------------

NODE = {"num_cpus": 1, "num_gpus": 2, "object_store_memory": 80 * 2**20}


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes on 127.0.0.1 with two logical GPUs each; node failures are noticed within ~2 s."""
    from ray.cluster_utils import Cluster

    system = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}
    cluster = Cluster(
        initialize_head=True, connect=False,
        head_node_args={**NODE, "include_dashboard": False, "_system_config": system},
    )  # fmt: skip
    try:
        cluster.add_node(**NODE)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def worker_node(cluster):
    """The cluster's second node, started again if a test stopped it."""
    nodes = cluster.worker_nodes
    if not nodes:
        cluster.add_node(**NODE)
        cluster.wait_for_nodes()
    return next(iter(cluster.worker_nodes))


def descendants(pids: set[int]) -> set[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, grown = set(pids), True
    while grown:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grown = bool(more)
    return found


def listening_addresses(pids: set[int]) -> set[str]:
    """The local addresses of the TCP sockets these processes listen on (from /proc), IPv4 as such."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    addresses = set()
    for table_path, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table_path).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                raw = bytes.fromhex(fields[1].split(":")[0])
                words = [raw[i : i + 4][::-1] for i in range(0, size, 4)]
                address = ipaddress.ip_address(b"".join(words))
                addresses.add(str(getattr(address, "ipv4_mapped", None) or address))  # ::ffff:a.b.c.d is a.b.c.d
    return addresses


def cluster_pids(cluster) -> set[int]:
    return {p.process.pid for node in cluster.list_all_nodes() for ps in node.all_processes.values() for p in ps}


@SHARED
def test_the_cluster_listens_on_the_loopback_address_only(cluster):
    addresses = listening_addresses(descendants(cluster_pids(cluster)))
    assert addresses and addresses <= {"127.0.0.1"}, addresses


def wait_for(condition, study, seconds=300):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline and study.poll() is None:
        time.sleep(0.05)
    assert condition(), "the study ended (or hung) before the moment the test waits for"


@SHARED
def test_ray_spreads_the_runs_survives_a_lost_node_and_a_killed_driver(cluster, reference, tmp_path):
    """The grid on the cluster. Once a run has come back from the second
    node, that node is killed (SIGKILL, no draining): its runs finish on the head. Then the driver is
    SIGKILLed; a finished run loses its probes; the node comes back; the same command again trains only
    what is missing and probes that run. The study ends with every run exactly once, never two runs at
    once on one GPU id of a node, and the local runner's numbers."""
    node = worker_node(cluster)
    out = tmp_path / "study"
    args = ["run", *GRID, *RAY, "--address", cluster.address, "--out", str(out)]
    study = start(*args)
    wait_for(lambda: any(s["placement"]["ray_node_id"] == node.node_id for s in summaries(out).values()), study)
    killed_at = time.time()
    cluster.remove_node(node, allow_graceful=False)
    count = len(summaries(out))
    wait_for(lambda: len(summaries(out)) >= count + 2, study)  # runs go on, on the head
    os.killpg(study.pid, signal.SIGKILL)
    study.wait()
    before = summaries(out)
    assert len(before) < GRID_POINTS, "kill the driver while it runs"
    unprobed = next(iter(before))
    (out / "runs" / unprobed / "lesion.csv").unlink()
    worker_node(cluster)

    result = cli(*args)
    assert result.returncode == 0, result.stderr
    assert "failed" not in result.stdout, result.stdout
    after = summaries(out)
    assert f"{GRID_POINTS - len(before)} to run" in result.stdout
    for key, summary in before.items():
        assert after[key] == summary, "a finished run was trained again"
    assert (out / "runs" / unprobed / "lesion.csv").exists()
    keys = [row["run_key"] for row in table(out, "results.csv")]
    assert len(keys) == len(set(keys)) == GRID_POINTS == len(after)

    placements = [s["placement"] | {"devices": s["placement"]["ray_gpu_ids"]} for s in after.values()]
    assert all(len(p["devices"]) == 1 for p in placements), "each run saw its one GPU"
    assert all(p["cuda_visible_devices"] == p["devices"][0] for p in placements), "and only that one"
    assert node.node_id in {p["ray_node_id"] for p in placements} and cluster.head_node.node_id in {
        p["ray_node_id"] for p in placements
    }, "runs spread over the nodes"
    assert not shared_devices(placements, lambda p: p["ray_node_id"])
    lost = [p for p in placements if p["ray_node_id"] == node.node_id and p["finished_at"] > killed_at]
    assert not lost, "nothing came back from the dead node after its death"
    for key, summary in after.items():  # paths name the driver's folder, as the local runner's do
        assert Path(summary["checkpoint"]).parent == out / "runs" / key and Path(summary["checkpoint"]).is_file()
    assert not list((out / "runs").glob(".landing-*"))
    assert_same_study(out, reference)


@SHARED
def test_ray_refuses_what_no_node_can_hold_in_one_line(cluster, tmp_path):
    for flag, value in (("--gpus-per-run", "3"), ("--cpus-per-run", "2")):
        result = cli("run", *GRID, "--executor", "ray", flag, value, "--address", cluster.address,
                     "--out", str(tmp_path / flag))  # fmt: skip
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert f"{flag} {value}: no node of the Ray cluster has that many" in lines[0]
        assert not (tmp_path / flag).exists(), "nothing is written before the cluster is checked"


@pytest.mark.quick
def test_without_ray_the_extra_is_named(tmp_path):
    hidden = tmp_path / "hidden" / "ray"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("No module named ray (hidden by the test)")\n')
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(hidden.parent), os.environ.get("PYTHONPATH")]))}
    result = cli("run", *GRID, "--executor", "ray", "--out", str(tmp_path / "study"), env=env)
    assert result.returncode == 2 and result.stderr.strip().endswith("pip install -c constraints.txt -e '.[ray]'")
    assert not (tmp_path / "study").exists()


@SHARED
def test_a_local_ray_of_this_machine_runs_the_study_on_loopback(cluster, tmp_path):
    """`--executor ray` without --address starts a Ray of this machine for the study alone (not the
    cluster already running here), which listens on 127.0.0.1 only and is gone when the study ends.
    Each run's offline W&B run is made where it trains and comes back inside the run's folder."""
    out = tmp_path / "study"
    grid = ["--dataset", "synthetic", "--backends", "lightning", "--depths", "8", "--seeds", "0", "--epochs", "1",
            "--warmup-epochs", "0", "--wandb", "offline"]  # fmt: skip
    study = start("run", *grid, "--executor", "ray", "--out", str(out))
    seen, ray, deadline = set(), set(), time.monotonic() + 300
    while study.poll() is None and time.monotonic() < deadline:
        family = descendants({study.pid}) - {study.pid}
        ray |= family
        seen |= listening_addresses(family)
        time.sleep(0.5)
    os.killpg(study.pid, signal.SIGKILL) if study.poll() is None else None
    stdout, stderr = study.communicate()
    assert study.returncode == 0, stderr
    assert seen and seen <= {"127.0.0.1"}, seen
    runs = summaries(out)
    assert len(runs) == 2 and not {s["placement"]["ray_node_id"] for s in runs.values()} & {
        n.node_id for n in cluster.list_all_nodes()
    }
    for key, summary in runs.items():
        wandb_dir = Path(summary["wandb_dir"])
        assert wandb_dir.is_relative_to((out / "runs" / key).resolve()) and wandb_dir.is_dir()
        assert list((out / "runs" / key / "wandb").glob("offline-run-*/run-*.wandb"))
    deadline = time.monotonic() + 30
    while (alive := {pid for pid in ray if Path(f"/proc/{pid}").exists()}) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, "the study's Ray outlived it"


# -- a run's folder coming back to the driver --------------------------------------------------------


@SHARED
def test_a_returned_run_folder_lands_whole_once_and_only_inside(reference, tmp_path):
    """`land_run` puts a packed run folder in place with the same bytes; a second copy of a finished run
    is dropped; an archive that reaches outside its folder, or lacks its summary, leaves nothing; a
    half-unpacked folder is never a run of the study's tables."""
    import io
    import shutil
    import tarfile

    from study.core.errors import UserError
    from study.experiment.run_archive import land_run, pack
    from study.experiment.study_folder import update_tables

    source = next(p.parent for p in (reference / "runs").glob("*/summary.json"))
    out = tmp_path / "study"
    (out / "runs").mkdir(parents=True)
    shutil.copy(reference / "study.json", out / "study.json")
    target = out / "runs" / source.name
    target.mkdir()
    (target / "run.json").write_text("{}")  # an unfinished attempt's folder: replaced
    summary = land_run(target, pack(source))
    assert summary == json.loads((source / "summary.json").read_text())
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in source.iterdir())
    assert all((target / p.name).read_bytes() == p.read_bytes() for p in source.iterdir() if p.is_file())

    (target / "history.csv").write_text("kept\n")
    assert land_run(target, pack(source)) == summary
    assert (target / "history.csv").read_text() == "kept\n", "a finished run is never replaced"

    def archive(members: dict[str, bytes]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    summary_bytes = (source / "summary.json").read_bytes()
    for members, message in (
        ({"../escaped.txt": b"x", "summary.json": summary_bytes}, "came back malformed"),
        ({"history.csv": b"x"}, "without summary.json"),
        ({"summary.json": b"{not json"}, "summary.json"),
    ):
        other = out / "runs" / "lightning-plain8-s9-0000000000"
        with pytest.raises(UserError, match=message):
            land_run(other, archive(members))
        assert not other.exists() and not (out / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
        assert sorted(p.name for p in (out / "runs").iterdir()) == [source.name], "no debris"

    absolute = tmp_path / "absolute.txt"  # tarfile's data filter makes it relative: it lands inside
    other = out / "runs" / "lightning-plain8-s9-0000000000"
    land_run(other, archive({str(absolute): b"x", "summary.json": summary_bytes}))
    assert not absolute.exists() and (other / str(absolute).lstrip("/")).read_bytes() == b"x"
    shutil.rmtree(other)

    half = out / "runs" / f".landing-1-{source.name}"
    shutil.copytree(target, half)
    assert [row["run_key"] for row in update_tables(out)] == [source.name]


def test_a_run_that_keeps_failing_is_one_line_and_the_study_goes_on(tmp_path):
    """The study's loop with an engine whose task for one run fails as Ray reports a task that raised
    or was lost more often than its retries: one line for that run, the others finished and tabled."""
    import io
    from concurrent.futures import Future

    from study.configs import get_config
    from study.experiment.runner import LocalEngine, run_study

    class LostTask(RuntimeError):
        pass

    class OneRunFails(LocalEngine):
        failures = (LostTask,)

        def train(self, executor, point, study):
            if point.arch == "plain":
                future = Future()
                future.set_exception(LostTask("the node died\nTask was retried 3 times"))
                return future
            return super().train(executor, point, study)

    config = get_config("default").with_overrides(dataset="synthetic", backends=("lightning",), depths=(8,),
                                                  seeds=(0,), epochs=1, warmup_epochs=0)  # fmt: skip
    terminal = io.StringIO()
    rows = run_study(config, tmp_path / "study", OneRunFails(1), wandb_mode="disabled", terminal=terminal)
    assert [row["arch"] for row in rows] == ["resnet"]
    shown = terminal.getvalue()
    assert shown.count("failed") == 1, shown
    assert "lightning plain-8 seed 0: failed, not in the study (Task was retried 3 times)" in shown, shown
