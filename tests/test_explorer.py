"""The study explorer (report.html): its numbers are the study's, it says what a folder lacks, and it
works in a real browser (headless Chromium): loads without console errors or network requests, and
its views follow its controls."""

import json
import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from plotly.offline import get_plotlyjs
from tables import table

from study.report.explorer import explorer_data, plotly_js
from study.verdicts.analyze import analyze
from study.verdicts.inputs import StudyTables

GRID = ["--dataset", "synthetic", "--backends", "lightning", "--depths", "8,14", "--seeds", "0,1", "--epochs", "2",
        "--wandb", "disabled"]  # fmt: skip


def cli(*args):
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, timeout=600)


def page_data(path) -> dict:
    found = re.search(r"<script type='application/json' id='study-data'>(.*?)</script>", path.read_text(), re.S)
    return json.loads(found.group(1).replace("<\\/", "</"))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("explorer") / "study"
    result = cli("run", *GRID, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_the_explorers_numbers_are_the_studys(study):
    data = page_data(study / "report.html")
    verdict = json.loads((study / "verdict.json").read_text())
    cells = verdict["degradation"]["backends"]["lightning"]["cells"]
    shown = [c for c in data["depth_error"] if c["backend"] == "lightning"]
    assert [(c["arch"], c["depth"], c["n"]) for c in shown] == [(c["arch"], c["depth"], c["n"]) for c in cells]
    for page, truth in zip(shown, cells, strict=True):
        for key in ("mean", "ci_low", "ci_high"):
            assert page[key] == pytest.approx(truth[key], rel=1e-4, abs=1e-12)
    results = pd.read_csv(study / "results.csv")
    assert {r["run_key"]: r["final_train_error"] for r in data["final"]} == pytest.approx(
        dict(zip(results.run_key, results.final_train_error, strict=True)), rel=1e-4
    )
    history = pd.read_csv(study / "history.csv")
    run = results.run_key[0]
    assert data["history"][run]["test_error"] == pytest.approx(list(history[history.run_key == run].test_error), 1e-4)
    assert data["axes"]["depth"] == [8, 14] and data["start"]["depth"] == 14 and not data["missing"]
    assert {"init_grads", "trained_grads", "init_ratios", "trained_ratios", "lesion"} <= set(data)
    assert all(data[name] for name in ("init_grads", "trained_grads", "init_ratios", "trained_ratios", "lesion"))


def test_explore_on_a_folder_with_results_alone_says_what_it_lacks(study, tmp_path):
    (tmp_path / "results.csv").write_text((study / "results.csv").read_text())
    result = cli("explore", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str((tmp_path / "report.html").resolve())
    data = page_data(tmp_path / "report.html")
    assert len(data["missing"]) == 5 and "history.csv (training curves)" in data["missing"]
    assert "This folder has no history.csv" in (tmp_path / "report.html").read_text()
    assert cli("explore", str(tmp_path / "nothing")).returncode == 2


@pytest.mark.quick
def test_the_explorer_covers_every_axis_a_study_varies():
    """relu-skip- and budget-like, multi-backend tables: every activation, norm, budget and backend becomes a
    control value, every run has its own key, and the first view is the verdict's main experiment."""
    results = table(seeds=(0, 1))
    results = pd.concat([results.assign(activation=a, norm=n, epochs=e) for a in ("tanh", "relu")
                         for n in ("none", "batch") for e in (30, 15)])  # fmt: skip
    results["run_key"] = results.run_key + "-" + results.activation + "-" + results.norm + results.epochs.astype(str)
    verdict = analyze(results)
    data = explorer_data(StudyTables(results=results), verdict)
    assert data["axes"]["activation"] == ["relu", "tanh"] and data["axes"]["norm"] == ["batch", "none"]
    assert data["axes"]["epochs"] == [15, 30] and data["axes"]["backend"] == sorted(results.backend.unique())
    assert len(data["run_index"]) == len(results) == len(data["final"])
    results.loc[results.index[0], "run_key"] = "<img src=x onerror=alert(1)>%{y}&"  # a crafted results.csv
    text = json.dumps(explorer_data(StudyTables(results=results), verdict))
    assert "<" not in text and "%{" not in text and "&" not in text and "_img src_x onerror_alert(1)___y__" in text
    assert data["start"] | data["main"] == data["start"] and data["main"] == {"activation": "relu", "norm": "batch",
                                                                            "epochs": 30}  # fmt: skip


def chromium():
    """A headless Chromium driven by its chromedriver, or a skip saying what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra has it)")
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("no Chromium with chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,2400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def test_the_explorer_in_a_real_browser(study, tmp_path):
    from selenium.webdriver.support.ui import Select, WebDriverWait

    page = study / "report.html"
    assert page.stat().st_size < 8 * 2**20
    browser = chromium()
    try:
        browser.get(page.as_uri())
        WebDriverWait(browser, 30).until(lambda b: b.execute_script("return document.body.dataset.rendered") == "1")

        def curves() -> list:
            return browser.execute_script(
                "return document.getElementById('chart-curves').data.map(t => [t.name, t.line.width])"
            )

        before = curves()
        assert before and all(browser.execute_script(f"return !!document.getElementById('{view}').data") for view in
                              ("chart-grads", "chart-ratios", "chart-lesion", "chart-depth"))  # fmt: skip
        browser.save_screenshot(str(tmp_path / "explorer-depth-14.png"))
        Select(browser.find_element("id", "control-depth")).select_by_value("8")
        Select(browser.find_element("id", "control-arch")).select_by_value("resnet")
        WebDriverWait(browser, 10).until(lambda b: b.execute_script("return document.body.dataset.rendered") == "3")
        after = curves()
        assert after != before
        for shown, bold in ((before, "depth 14"), (after, "depth 8")):  # the selected depth is drawn bold
            assert {name.startswith(bold) for name, width in shown if width > 3} == {True}, shown
        title = browser.execute_script("return document.getElementById('chart-lesion').layout.title.text")
        assert "resnet-8" in title, title
        browser.save_screenshot(str(tmp_path / "explorer-resnet-8.png"))
        assert (tmp_path / "explorer-resnet-8.png").stat().st_size > 10_000

        assert not console_errors(browser)
        urls = requested(browser)
        assert page.as_uri() in urls and not [url for url in urls if not url.startswith(LOCAL)], urls
    finally:
        browser.quit()


LOCAL = ("file:", "data:", "about:")


def console_errors(browser) -> list:
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def requested(browser) -> list[str]:
    """Every URL the page asked for (Chrome's performance log: Network.requestWillBeSent)."""
    messages = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    return [m["params"]["request"]["url"] for m in messages if m["method"] == "Network.requestWillBeSent"]


@pytest.mark.quick
def test_the_browser_checks_catch_a_page_that_fetches_or_fails(tmp_path):
    """The checks above, on a page that loads its library from the network and throws."""
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><script src='http://127.0.0.1:9/plotly.min.js'></script>"
                    "<script>Plotly.newPlot('x', [])</script>")  # fmt: skip
    browser = chromium()
    try:
        browser.get(page.as_uri())
        assert console_errors(browser)  # the failed load and "Plotly is not defined"
        assert "http://127.0.0.1:9/plotly.min.js" in requested(browser)
    finally:
        browser.quit()


def test_without_plotly_the_page_says_what_it_needs(study, tmp_path):
    """The GPU image has no plotly unless carried: the study's report is still written, saying so."""
    hidden = tmp_path / "hidden" / "plotly"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("No module named plotly (hidden by the test)")\n')
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "results.csv").write_text((study / "results.csv").read_text())
    paths = [str(hidden.parent), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    result = subprocess.run([sys.executable, "-m", "study", "explore", str(folder)], capture_output=True, text=True,
                            timeout=300, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    page = (folder / "report.html").read_text()
    assert "The interactive views need the plotly package" in page and "study-data" not in page
    assert plotly_js() == get_plotlyjs()  # where it is installed, the page embeds what plotly ships
