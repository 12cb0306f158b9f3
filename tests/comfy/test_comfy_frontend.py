"""ComfyUI's own frontend (headless Debian chromium through Playwright) with the node pack: the UI-format example
workflows load with InitEdit's nodes and widgets, and run when queued from the page."""
import json
import shutil
import time

import pytest

import workflows as wf

UI_WORKFLOWS = ["initedit_region_reroll.json", "initedit_layout_two_boxes.json"]


@pytest.fixture(scope="module")
def page(comfy):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("no chromium (Debian's chromium package) for the frontend tests")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1400, "height": 900})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(comfy.url, wait_until="domcontentloaded")
        pg.wait_for_function("window.app && window.app.graph", timeout=120000)
        pg.errors = errors
        yield pg
        browser.close()


@pytest.mark.parametrize("name", UI_WORKFLOWS)
def test_ui_example_workflow_loads_and_runs_from_the_page(comfy, page, name):
    ui = json.loads((wf.REPO / "example_workflows" / name).read_text())
    api = json.loads((wf.REPO / "example_workflows" / "api" / name).read_text())
    page.evaluate("async (g) => { await window.app.loadGraphData(g); }", ui)
    nodes = page.evaluate("""() => window.app.graph._nodes.map(n => ({type: n.type,
        widgets: Object.fromEntries((n.widgets || []).map(w => [w.name, w.value]))}))""")
    ours = [n for n in nodes if n["type"].startswith("InitEdit")]
    assert ours and all(n["type"] in ("InitEditRegionReroll", "InitEditLayout", "InitEditHeatmaps") for n in ours)
    specs = [n["inputs"]["spec"] for n in api.values() if "spec" in n["inputs"]]
    assert [n["widgets"]["spec"] for n in ours if "spec" in n["widgets"]] == specs  # the JSON is kept in the workflow
    before = set(comfy.get_json("/history"))
    page.evaluate("""(ckpt) => { for (const n of window.app.graph._nodes) for (const w of n.widgets || []) {
        if (w.name === 'ckpt_name') w.value = ckpt;
        if (w.name === 'width' || w.name === 'height') w.value = 128;
        if (w.name === 'steps') w.value = 4; } }""", wf.CKPT)
    page.evaluate("async () => { await window.app.queuePrompt(0, 1); }")
    deadline = time.time() + 600
    while time.time() < deadline:
        new = {k: v for k, v in comfy.get_json("/history").items() if k not in before}
        if new:
            (entry,) = new.values()
            if entry["status"].get("completed") or entry["status"].get("status_str") == "error":
                break
        time.sleep(1)
    else:
        pytest.fail("the queued workflow did not finish")
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert sum(1 for out in entry["outputs"].values() if out.get("images")) == 2
    assert page.errors == []
