"""The command-line contract: JSON output, exit codes, one-line errors."""

import json
import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("backend", ["keras", "lightning"])
def test_describe_counts_from_the_built_model(backend):
    result = run("describe", "resnet56", "--backend", backend, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["trainable_params"] == info["counted"]["trainable_params"] == 853_018
    assert info["macs"] == info["counted"]["macs"]
    assert info["weighted_layers"] == 56


@pytest.mark.quick
def test_describe_imports_no_framework():
    code = (
        "import sys; from study.cli import main; main(['describe', 'resnet50', '--json']);"
        "assert not {'torch', 'tensorflow', 'keras'} & set(sys.modules), 'framework imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["trainable_params"] == 25_557_032


@pytest.mark.quick
def test_describe_applies_overrides():
    info = json.loads(run("describe", "plain-8", "--input", "28,28,1", "--classes", "3", "--json").stdout)
    assert info["input_shape"] == [28, 28, 1] and info["classes"] == 3 and info["residual"] is False


def test_agree_json_passes_for_resnet50_float64():
    result = run("agree", "resnet50", "--input", "64,64,3", "--dtype", "float64", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] is True
    assert set(report["max_rel_error"]) == {
        "logits_eval", "logits_train", "loss", "input_grad", "param_grads", "bn_running_stats"
    }  # fmt: skip
    assert max(report["max_rel_error"].values()) <= 1e-9


@pytest.mark.quick
@pytest.mark.parametrize(
    "args, message",
    [
        (["describe", "resnet-21"], "depth must be 6n+2"),
        (["describe", "resnet7"], "depth must be 6n+2"),
        (["describe", "foo"], "unknown spec 'foo'"),
        (["describe", "resnet20", "--activation", "gelu"], "invalid choice: 'gelu'"),
        (["describe", "resnet20", "--shortcut", "C"], "invalid choice: 'C'"),
        (["describe", "resnet20", "--input", "3,3,3"], "too small"),
        (["describe", "resnet50", "--input", "16,16,3"], "at least 32"),
        (["describe", "resnet20", "--input", "32x32"], "--input must be three integers"),
        (["describe", "resnet20", "--classes", "1"], "classes must be an integer in 2..100000"),
        (["describe", "resnet20", "--backend", "jax"], "invalid choice: 'jax'"),
        (["agree", "resnet20", "--dtype", "float16"], "invalid choice: 'float16'"),
        (["agree", "resnet-21"], "depth must be 6n+2"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["run", "--config", "budget", "--epochs", "3"], "trains its own budgets (15, 30, 60)"),
        (["sweep", "--config", "budget"], "not a sweep axis yet"),
        ([], "required: command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
