"""The MLflow UI tells the chapter's story, checked in a real browser.

A small real sweep (three configurations with two seeds each, on 500 images for 2 epochs; the
full data when the screenshots are updated) registers its best child,
which `fmtrain evaluate` then scores; `mlflow ui` serves the store with the command the sweep
printed, from another folder; headless Chromium opens the address the sweep printed and checks
what a user would see: the children nested under the sweep, their names and descriptions, the
compare page, the val_loss chart, the figures, the Models page and the registry, the runs found
by their datasets, a run's datasets and its system metrics.

The MLflow 3.17 UI is a React app: the selectors are its rendered DOM (ag-grid rows carry the run
id as ``row-id``, the compare page's tables their own classes), and every step waits for what it
needs to be rendered. ``FMTRAIN_UPDATE_SCREENSHOTS=1`` also saves README's screenshots in docs/;
a failing test leaves its screenshot in its pytest tmp folder.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass

import pytest
from mlflow.tracking import MlflowClient
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from conftest import NO_JOB_RUNNER, PROJECT, fmtrain_here, free_port, wait_for_http

CHROMIUM = os.environ.get("FMTRAIN_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FMTRAIN_CHROMEDRIVER", "/usr/bin/chromedriver")
CONFIGS = ["rmsprop-val", "adam", "early-stopping"]
SEEDS = [42, 43]
# The sweep's children, one per (configuration, seed), named as the sweep names them.
CHILDREN = [f"{config}/seed-{seed}" for config in CONFIGS for seed in SEEDS]
# Between them only these settings differ; every other param is the same for all six.
DIFFERING = {"config", "seed", "optimizer", "dropout_rate", "patience", "checkpoint"}
CHILD_ARTIFACTS = {"accuracy-curve.png", "best-model.keras", "history.csv", "loss-curve.png",
                   "model-whole.keras", "model.weights.h5", "model_summary.txt"}
ARTIFACTS_TAB = "//*[@role='tab' or self::button or self::div][normalize-space(text())='Artifacts']"
WAIT = 90  # seconds for the UI to render anything, on a busy 2-core machine
UPDATE_SCREENSHOTS = os.environ.get("FMTRAIN_UPDATE_SCREENSHOTS") == "1"
# The story's sweep: 500 images for 2 epochs; for README's screenshots, the chapter's full data
# (48,000 images, up to 20 epochs), so that its curves show the chapter's story. Several seeds
# train on JAX (the sweep's default for them), which each child's description names.
STORY_SETTINGS = [] if UPDATE_SCREENSHOTS else ["--limit", "500", "--epochs", "2"]


@dataclass
class Story:
    """The sweep as the store holds it, and what the sweep printed."""

    printed_url: str
    serve_command: str
    parent: object  # mlflow Run
    children: dict  # child name (configuration/seed-N) -> mlflow Run
    models: dict  # child name -> the id of its final model
    best: str  # the best child's name
    version: object  # the registered ModelVersion
    evaluation: object  # the evaluation run of models:/fm@champion

    def final(self, child: str, key: str = "final_val_loss") -> float:
        return self.children[child].data.metrics[key]

    def config(self, child: str) -> str:
        """The child's configuration: the name its model has."""
        return self.children[child].data.tags["fmtrain.config"]


@pytest.fixture(scope="module")
def story(tmp_path_factory, real_data_dir) -> Story:
    """Sweep, register the best and evaluate it, as a user types it, in a fresh folder with
    MLflow's default store (sqlite:///mlflow.db there)."""
    work = tmp_path_factory.mktemp("ui-sweep")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MLFLOW_") and k != "FMTRAIN_DATA_DIR"}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"  # no network but the loopback
    sweep = subprocess.run(
        ["fmtrain", "sweep", "--configs", ",".join(CONFIGS), "--seeds", ",".join(map(str, SEEDS)),
         *STORY_SETTINGS,
         "--quiet", "--register_best", "fm", "--data_dir", str(real_data_dir)],
        capture_output=True, text=True, env=env, cwd=work, timeout=600)
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    serve = re.search(r"^see it in the MLflow UI: (mlflow ui .+)$", sweep.stdout, re.M)
    url = re.search(r"^  then open (http://\S+)$", sweep.stdout, re.M)
    assert serve and url, sweep.stdout[-2000:]
    evaluate = fmtrain_here(["evaluate", "--model_uri", "models:/fm@champion", "--data_dir", str(real_data_dir)],
                            env=env, cwd=work)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    runs = client.search_runs(client.get_experiment_by_name("fashion-mnist").experiment_id)
    (parent,) = [r for r in runs if r.info.run_name == "sweep"]
    (evaluation,) = [r for r in runs if r.info.run_name == "evaluate fm/v1"]
    children = {r.info.run_name: r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == sorted(CHILDREN)
    models = {name: model.model_id for name, run in children.items()
              for model in client.search_logged_models(experiment_ids=[parent.info.experiment_id],
                                                       filter_string=f"source_run_id = '{run.info.run_id}'")
              if model.name == run.data.tags["fmtrain.config"]}  # the final model, not the best checkpoint
    assert sorted(models) == sorted(CHILDREN)
    (best,) = [name for name, run in children.items() if run.info.run_id == parent.data.tags["fmtrain.best_run_id"]]
    return Story(url.group(1), serve.group(1), parent, children, models, best,
                 client.get_model_version_by_alias("fm", "champion"), evaluation)


@pytest.fixture(scope="module")
def ui(story, tmp_path_factory):
    """`mlflow ui` started with the printed command, from another folder, on a free port;
    yields a function that turns a printed address into this server's."""
    port = free_port()
    elsewhere = tmp_path_factory.mktemp("ui-server")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(NO_JOB_RUNNER, MLFLOW_DISABLE_TELEMETRY="true")
    log = open(elsewhere / "server.log", "w")
    server = subprocess.Popen(shlex.split(story.serve_command) + [
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=elsewhere, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", server, timeout=120)
        yield lambda address: address.replace("http://127.0.0.1:5000", f"http://127.0.0.1:{port}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()


@pytest.fixture(scope="module")
def browser():
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    assert not missing, f"{missing} not found: install the Debian packages chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1600,1150", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     # Nothing but the loopback: every host name fails to resolve.
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, ui, story, request, tmp_path):
    """The browser on the printed address; a screenshot in tmp_path if the test fails."""
    failed = request.session.testsfailed
    browser.get(ui(story.printed_url))
    # MLflow 3.17 opens its assistant panel on a first visit; a returning user has closed it.
    browser.execute_script("localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
                           "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true')")
    browser.refresh()
    yield browser
    if request.session.testsfailed > failed:  # the call phase is reported before this teardown
        browser.save_screenshot(str(tmp_path / "failure.png"))
        print(f"screenshot of the failure: {tmp_path / 'failure.png'}")


def wait_for(driver, xpath: str, timeout: float = WAIT):
    """The first element matching ``xpath`` once it is displayed."""
    try:
        return WebDriverWait(driver, timeout).until(
            lambda _: next((e for e in driver.find_elements(By.XPATH, xpath) if e.is_displayed()), None))
    except TimeoutException:
        raise AssertionError(f"nothing displayed at {xpath} in {timeout} s") from None


def until(driver, condition, what: str, timeout: float = WAIT):
    try:
        return WebDriverWait(driver, timeout).until(lambda _: condition())
    except TimeoutException:
        raise AssertionError(f"{what}: not in {timeout} s") from None


def link(name: str) -> str:
    return f"//a[normalize-space()='{name}']"


def row(run_id: str) -> str:
    """A run's row in the runs table, or a model's on the Models page (ag-grid names each row after
    its run id, or its model id)."""
    return f"//div[@role='row'][@row-id='{run_id}']"


def cell(driver, run_id: str, column: str) -> str:
    element = wait_for(driver, f"{row(run_id)}//div[@col-id='{column}']")
    return " ".join(element.get_attribute("textContent").split())


def expand_sweep(driver, story: Story) -> None:
    """Unfold the sweep's row, as a user clicks the [+] before its name."""
    wait_for(driver, link("sweep"))
    if not driver.find_elements(By.XPATH, link(CHILDREN[0])):
        wait_for(driver, f"{row(story.parent.info.run_id)}//div[@col-id='attributes.`Run Name`']//button").click()
    for name in CHILDREN:
        wait_for(driver, link(name))


def choose_columns(driver, show=(), hide=()) -> None:
    """Columns -> tick each of ``show`` and untick each of ``hide`` (searching, where the menu
    has a search box, since long lists scroll)."""
    wait_for(driver, "//button[normalize-space()='Columns']").click()
    wait_for(driver, "//div[contains(@class,'tree-treenode')]")
    search = driver.find_elements(By.XPATH, "//input[@placeholder='Search columns']")
    for name, wanted in [(name, True) for name in show] + [(name, False) for name in hide]:
        if search:
            search[0].send_keys(Keys.CONTROL, "a", Keys.DELETE, name)
        node = wait_for(driver, f"//div[contains(@class,'tree-treenode')][normalize-space(.)='{name}']")
        box = node.find_element(By.XPATH, ".//span[contains(@class,'tree-checkbox')]")
        if ("tree-checkbox-checked" in box.get_attribute("class")) != wanted:
            box.click()
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)


def image_loaded(driver, element) -> bool:
    return bool(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", element))


def save_screenshot(driver, name: str, width: int | None = None) -> None:
    """README's screenshot docs/NAME, when asked for, kept small (a 256-colour palette); ``width``
    crops it to that many pixels from the left."""
    if not UPDATE_SCREENSHOTS:
        return
    from PIL import Image

    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    if width is not None:
        image = image.crop((0, 0, min(width, image.width), image.height))
    target = PROJECT / "docs" / name
    target.parent.mkdir(exist_ok=True)
    image.quantize(colors=256).save(target, optimize=True)
    assert target.stat().st_size < 500_000, f"{target} is {target.stat().st_size} bytes"


def test_the_printed_link_opens_the_runs_view_with_the_children_nested_under_the_sweep(page, story):
    assert story.printed_url == (f"http://127.0.0.1:5000/#/experiments/{story.parent.info.experiment_id}"
                                 "/runs?workflowType=machine_learning")
    sweep = wait_for(page, link("sweep"))
    assert f"#/experiments/{story.parent.info.experiment_id}/runs" in page.current_url
    wait_for(page, "//a[normalize-space()='fashion-mnist']")  # the experiment, in the breadcrumb
    assert not page.find_elements(By.XPATH, link("adam/seed-42"))  # the children are folded into the sweep
    expand_sweep(page, story)
    # The children follow their parent, indented under it.
    order = sorted(page.find_elements(By.XPATH, "//div[contains(@class,'ag-pinned-left-cols-container')]"
                                                "//div[@role='row']"),
                   key=lambda r: int(r.get_attribute("row-index")))
    ids = [r.get_attribute("row-id") for r in order]
    at = ids.index(story.parent.info.run_id)
    assert set(ids[at + 1: at + 1 + len(CHILDREN)]) == {run.info.run_id for run in story.children.values()}
    for name in CHILDREN:
        assert page.find_element(By.XPATH, link(name)).location["x"] > sweep.location["x"]
    # Each child shows its model under the configuration's name; the best one its registered version.
    for name, run in story.children.items():
        models = cell(page, run.info.run_id, "attributes.`Models`")
        # Two models a run: the final one (under the configuration's name) and its best checkpoint.
        if name == story.best:
            assert models.startswith("fm v1"), models
        else:
            # (a follower that shares its leader's epochs keeps no checkpoint of its own)
            assert models in (story.config(name), f"{story.config(name)}+1", "best-checkpoint+1"), models

    choose_columns(page, show=["Description", "final_val_loss"], hide=["Dataset", "Source"])
    for name, run in story.children.items():
        assert cell(page, run.info.run_id, "attributes.`Description`").startswith(
            f"val_loss {story.final(name):.4f}, val_accuracy {story.final(name, 'final_val_accuracy'):.4f}")
        assert float(cell(page, run.info.run_id, "metrics.`final_val_loss`")) == pytest.approx(
            story.final(name), abs=5e-4)
    # The parent's description is the chapter report over the seeds.
    assert cell(page, story.parent.info.run_id, "attributes.`Description`").startswith(
        "# The chapter with 2 seed(s): 42, 43")
    save_screenshot(page, "ui-runs.png")


def test_run_pages_tell_the_chapter_step_the_changes_and_the_result(page, story):
    expand_sweep(page, story)
    wait_for(page, link("early-stopping/seed-43")).click()
    first = wait_for(page, "//p[starts-with(normalize-space(), 'val_loss ')]")
    text = " ".join(" ".join(p.get_attribute("textContent").split())
                    for p in first.find_elements(By.XPATH, "../p"))
    metrics = story.children["early-stopping/seed-43"].data.metrics
    stopped, best = (1, 1) if STORY_SETTINGS else (int(metrics["stopped_epoch"]), int(metrics["best_epoch"]))
    assert text.startswith(f"val_loss {metrics['final_val_loss']:.4f}, "
                           f"val_accuracy {metrics['final_val_accuracy']:.4f} (the model kept), "
                           f"stopped_epoch {stopped}, best_epoch {best}.")
    assert "The chapter's step: EarlyStopping(patience=2, restore_best_weights=True)." in text
    # The settings the run did not take from the chapter: the seed, the backend (and the story's
    # small data, except for README's screenshots).
    small = "epochs=2, seed=43, limit=500" if STORY_SETTINGS else "seed=43"
    assert f"Set for this run: {small}, backend=jax." in text
    wait_for(page, "//em[normalize-space()='EarlyStopping(patience=2, restore_best_weights=True)']")

    # The parent: the chapter report over the seeds, its tables rendered as tables.
    wait_for(page, link("sweep")).click()
    wait_for(page, "//*[normalize-space()='The chapter with 2 seed(s): 42, 43']")
    wait_for(page, "//button[normalize-space()='Show more'] | //*[normalize-space(text())='Show more']").click()
    table = wait_for(page, "//table[.//th[normalize-space()='final_val_loss']]")
    rows = [r.find_elements(By.TAG_NAME, "td")[0].text for r in table.find_elements(By.XPATH, ".//tbody/tr")]
    assert rows == CONFIGS
    # Its headline metrics, so that it is not an empty row in tables and charts.
    wait_for(page, link("best_final_val_loss"))
    parent_metrics = story.parent.data.metrics
    assert parent_metrics["best_final_val_loss"] == min(story.final(c) for c in CHILDREN)
    assert parent_metrics["best_final_val_accuracy"] == story.final(story.best, "final_val_accuracy")


def test_compare_lines_up_the_params_by_name_and_only_the_meaningful_ones_differ(page, story):
    expand_sweep(page, story)
    for run in story.children.values():
        wait_for(page, f"{row(run.info.run_id)}//div[contains(@class,'ag-checkbox-input-wrapper')]").click()
    wait_for(page, "//*[@data-testid='runs-compare-button']").click()
    wait_for(page, f"//*[contains(normalize-space(text()), 'Comparing {len(CHILDREN)} Runs')]")
    table = wait_for(page, "//div[contains(@class,'collapse-item')][.//*[normalize-space(text())='Parameters']]"
                           "//table[contains(@class,'mlflow-compare-run-table')]")

    def params() -> dict[str, list[str]]:
        lines = {}
        for line in table.find_elements(By.TAG_NAME, "tr"):
            key = line.find_element(By.TAG_NAME, "th").get_attribute("textContent").strip()
            lines[key] = [td.get_attribute("textContent").strip() for td in line.find_elements(By.TAG_NAME, "td")]
        return lines

    shown = params()
    logged = set(story.children["adam/seed-42"].data.params)
    assert set(shown) == logged and all(len(values) == len(CHILDREN) for values in shown.values())
    assert {key for key, values in shown.items() if len(set(values)) > 1} == DIFFERING
    highlighted = {line.find_element(By.TAG_NAME, "th").get_attribute("textContent").strip()
                   for line in table.find_elements(By.CSS_SELECTOR, "tr.diff-row")}
    assert highlighted == DIFFERING
    page.find_element(By.CSS_SELECTOR, "button[aria-label='Parameters - Show diff only']").click()
    until(page, lambda: set(params()) == DIFFERING, "Show diff only leaves the differing params")
    # No duplicate metric under another name (autolog's validation_*).
    metric_names = {a.get_attribute("textContent").strip()
                    for a in page.find_elements(By.CSS_SELECTOR, "a[title='Plot chart']")}
    assert metric_names and not [name for name in metric_names if name.startswith("validation_")]
    page.execute_script("arguments[0].scrollIntoView({block: 'start'})", page.find_element(
        By.XPATH, "//div[contains(@class,'collapse-header')][normalize-space()='Run details']"))
    save_screenshot(page, "ui-compare.png")


def test_the_val_loss_chart_overlays_the_children(page, story):
    expand_sweep(page, story)
    colours = {name: _rgb(wait_for(page, f"{row(run.info.run_id)}//*[@data-testid='experiment-view-table-run-color']"))
               for name, run in story.children.items()}
    wait_for(page, "//input[@name='runs-view-mode'][@value='CHART']/ancestor::label").click()
    wait_for(page, "//input[@placeholder='Search metric charts']").send_keys("val_loss")
    title = wait_for(page, "//*[@data-testid='experiment-view-compare-runs-card']"
                           "//*[normalize-space(text())='val_loss']")
    card = title.find_element(By.XPATH, "./ancestor::*[@data-testid='experiment-view-compare-runs-card'][1]")
    page.execute_script("arguments[0].scrollIntoView({block: 'end'})", card)

    def lines() -> list:  # each run's line; MLflow draws a faint unsmoothed copy behind it
        return [path for path in card.find_elements(By.CSS_SELECTOR, ".scatterlayer .trace path.js-line")
                if "stroke-opacity: 1" in (path.get_attribute("style") or "")]

    drawn = until(page, lambda: len(lines()) == len(CHILDREN) and lines(), "a val_loss line per child")
    strokes = {re.search(r"stroke: (rgb\([^)]*\))", path.get_attribute("style")).group(1) for path in drawn}
    assert strokes == set(colours.values())
    # A point per epoch each, in the chart's own data (each run has a line with markers and a faint
    # copy; Plotly's drawn path leaves out points on a straight stretch).
    points = page.execute_script(
        "return arguments[0].querySelector('.js-plotly-plot').data.map(t => [t.name, t.x.length]);", card)
    assert {tuple(point) for point in points} == {
        (name, int(run.data.metrics["epochs_run"])) for name, run in story.children.items()}
    for name in CHILDREN:
        assert f"{name} (val_loss)" in card.text
    save_screenshot(page, "ui-charts.png")
    wait_for(page, "//input[@name='runs-view-mode'][@value='TABLE']/ancestor::label").click()


def _rgb(element) -> str:
    """An element's background colour, as the charts write their strokes: ``rgb(r, g, b)``."""
    return re.search(r"rgb\([^)]*\)", element.get_attribute("style")).group(0)


def test_the_parents_figure_and_a_childs_artifacts_open(page, story, ui):
    wait_for(page, link("sweep")).click()
    wait_for(page, ARTIFACTS_TAB).click()
    wait_for(page, "//*[normalize-space(text())='sweep-val-loss.png']").click()
    figure = wait_for(page, "//img[starts-with(@src, 'blob:')]")
    until(page, lambda: image_loaded(page, figure), "the sweep's figure loads")

    # A child's Artifacts tab.
    page.get(ui(story.printed_url))
    expand_sweep(page, story)
    wait_for(page, link("adam/seed-42")).click()
    wait_for(page, ARTIFACTS_TAB).click()
    for name in CHILD_ARTIFACTS - {"best-model.keras"}:  # adam keeps no checkpoint
        wait_for(page, f"//*[normalize-space(text())='{name}']")
    wait_for(page, "//*[normalize-space(text())='loss-curve.png']").click()
    curve = wait_for(page, "//img[starts-with(@src, 'blob:')]")
    until(page, lambda: image_loaded(page, curve), "the child's loss curve loads")


def test_the_models_page_shows_final_metrics_and_the_registered_champion(page, story):
    wait_for(page, "//a[normalize-space()='Models']").click()
    for name in CHILDREN:  # each seed's model under its configuration's name
        wait_for(page, f"{row(story.models[name])}//a[normalize-space()='{story.config(name)}']")
    choose_columns(page, hide=["Status", "Logged from", "Dataset", "Parameters"])
    viewport = page.find_element(By.CSS_SELECTOR, ".ag-body-horizontal-scroll-viewport")

    def column(header: str) -> str:
        """Scroll the table until ``header`` is rendered; its column's index."""
        def found():
            for element in page.find_elements(By.CSS_SELECTOR, ".ag-header-cell"):
                if " ".join(element.get_attribute("textContent").split()) == header:
                    return element.get_attribute("aria-colindex")
            page.execute_script("arguments[0].scrollLeft += 300", viewport)
            return None
        return until(page, found, f"the Models page's column {header}")

    def value(child: str, column_index: str) -> str:
        """The cell of ``child``'s model (ag-grid names each row after its model id)."""
        element = wait_for(page, f"//div[contains(@class,'ag-center-cols-container')]"
                                 f"{row(story.models[child])}//div[@aria-colindex='{column_index}']")
        return " ".join((element.text or element.get_attribute("textContent")).split())

    page.execute_script("arguments[0].scrollLeft = 0", viewport)
    registered = column("Registered models")
    assert value(story.best, registered) == "fm v1"
    # The champion's test scores (MLflow's evaluator's) are on its evaluation run.
    assert story.evaluation.data.metrics["accuracy_score"] > 0.6
    for key in ("val_loss", "final_val_loss", "final_val_accuracy", "stopped_epoch"):
        index = column(key)
        for name in CHILDREN:
            shown = value(name, index)
            # The kept model's final value: its epoch's val_loss is final_val_loss, not epoch 0's.
            expected = story.final(name, "final_val_loss" if key == "val_loss" else key)
            assert float(shown) == pytest.approx(expected, rel=1e-5), (name, key, shown)
    page.execute_script("arguments[0].scrollLeft = 0", viewport)
    column("val_loss")  # rendered; then scrolled to the left edge
    header = page.find_element(By.XPATH, "//div[contains(@class,'ag-header-cell')][normalize-space()='val_loss']")
    page.execute_script("arguments[1].scrollLeft = arguments[0].offsetLeft", header, viewport)
    # The screenshot ends after the last column shown whole, not inside the next one.
    whole = page.execute_script(
        "const edge = arguments[0].getBoundingClientRect().right;"
        "const rights = [...document.querySelectorAll('.ag-header-cell')]"
        "  .map(cell => cell.getBoundingClientRect().right).filter(right => right <= edge);"
        "return Math.max(...rights) * window.devicePixelRatio;", viewport)
    assert whole > header.location["x"]
    save_screenshot(page, "ui-models.png", width=int(whole) + 8)

    # The registry: the champion alias on the version, whose description tells its story.
    page.execute_script("arguments[0].scrollLeft = 0", viewport)
    wait_for(page, "//a[contains(@href, '/models/fm/versions/1')]").click()
    wait_for(page, "//*[@data-testid='descriptions-item'][.//*[normalize-space()='Aliases']]//*[@title='champion']")
    source_model = wait_for(page, "//a[@data-testid='source-model-link']")
    best_config = story.config(story.best)
    assert source_model.text == best_config and story.version.source.endswith(
        source_model.get_attribute("href").rsplit("/", 1)[-1])
    wait_for(page, f"//*[starts-with(normalize-space(), '{best_config}: val_loss {story.final(story.best):.4f}')]")
    test_line = " ".join(wait_for(page, "//p[strong[normalize-space()='Test set']]").text.split())
    scores = story.evaluation.data.metrics
    assert test_line.endswith(f"evaluation run {story.evaluation.info.run_id}): accuracy "
                              f"{scores['accuracy_score']:.4f}, F1 {scores['f1_score']:.4f}, "
                              f"log loss {scores['log_loss']:.4f}.")
    save_screenshot(page, "ui-version.png")


def test_runs_are_found_by_dataset_and_show_their_datasets_and_system_metrics(page, story, ui):
    (test_set,) = [item.dataset for item in story.evaluation.inputs.dataset_inputs]
    datasets = wait_for(page, "//button[@data-testid='datasets-select-dropdown']")
    # Greyed out while the runs load, and for good when no run logs its inputs.
    until(page, datasets.is_enabled, "the Datasets filter is enabled")
    datasets.click()
    wait_for(page, f"//*[@role='option'][starts-with(normalize-space(), "
                   f"'fashion-mnist-test ({test_set.digest})')]").click()
    page.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    wait_for(page, link("evaluate fm/v1"))
    until(page, lambda: not page.find_elements(By.XPATH, link("sweep")), "only the evaluation run is listed")

    # A child's page: the datasets it used, the digest of its arrays, where they came from. A
    # child whose system metrics were sampled (every 2 s: on the story's 500 images a child can
    # end before its first sample; the first of each family, which warms up its worker, cannot).
    sampled = [run for run in story.children.values() if any(key.startswith("system/") for key in run.data.metrics)]
    assert sampled, "no child's system metrics were sampled"
    child = sampled[0]
    page.get(ui(f"http://127.0.0.1:5000/#/experiments/{child.info.experiment_id}/runs/{child.info.run_id}"))
    training = {item.dataset.name: item.dataset for item in child.inputs.dataset_inputs}["fashion-mnist-train"]
    wait_for(page, f"//span[normalize-space()='fashion-mnist-train ({training.digest})']").click()
    drawer = wait_for(page, "//*[@role='dialog'][.//*[starts-with(normalize-space(), 'Data details for')]]")
    shape = f"features shape: [{child.data.params['train_size']},28,28]"  # [500,28,28] for the story's 500
    until(page, lambda: shape in " ".join(drawer.text.split()), "the dataset's profile")
    assert training.digest in drawer.text and "fashion-mnist-validation" in drawer.text
    save_screenshot(page, "ui-datasets.png")
    page.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)

    # Its system metrics: CPU and memory curves sampled while it trained, in a Ray worker whose
    # node names them.
    node = socket.gethostname()
    wait_for(page, "//*[@role='tab'][normalize-space()='System metrics']").click()
    for curve in ("cpu_utilization_percentage", "system_memory_usage_megabytes"):
        assert f"system/{node}/{curve}" in child.data.metrics
        wait_for(page, f"//h4[@title='system/{node}/{curve}']")
    save_screenshot(page, "ui-system-metrics.png")
