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


def test_box_editor_draws_a_box_into_the_spec_widget(comfy, page):
    """Drag on the InitEdit node's canvas: the box lands in the spec JSON (the widget stays the truth)."""
    page.reload(wait_until="domcontentloaded")
    page.wait_for_function("window.app && window.app.graph", timeout=120000)
    page.evaluate("""() => { window.app.graph.clear();
        for (const [type, pos] of [['InitEditRegionReroll', [100, 100]], ['InitEditLayout', [600, 100]]]) {
          const n = LiteGraph.createNode(type); n.pos = pos; window.app.graph.add(n); }
        window.app.canvas.ds.scale = 1; window.app.canvas.ds.offset = [0, 0];
        window.app.graph.setDirtyCanvas(true, true); }""")
    page.wait_for_selector(".initedit-canvas", state="visible", timeout=30000)
    canvases = page.locator(".initedit-canvas")
    assert canvases.count() == 2

    def spec_of(node_type):
        return json.loads(page.evaluate("""(t) => window.app.graph._nodes.find(n => n.type === t)
            .widgets.find(w => w.name === 'spec').value""", node_type))

    def drag(index, frm, to):
        box = canvases.nth(index).bounding_box()
        page.mouse.move(box["x"] + frm[0] * box["width"], box["y"] + frm[1] * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + to[0] * box["width"], box["y"] + to[1] * box["height"], steps=5)
        page.mouse.up()

    page.evaluate("""() => { const n = window.app.graph._nodes.find(n => n.type === 'InitEditRegionReroll');
        const w = n.widgets.find(w => w.name === 'spec');
        w.value = JSON.stringify({reroll: [{box: [0, 0, 0.2, 0.2], seed: 5}], keep: 0.5, vary: 'reroll'});
        w.callback?.(w.value); }""")
    before = spec_of("InitEditRegionReroll")
    drag(0, (0.1, 0.2), (0.6, 0.7))
    after = spec_of("InitEditRegionReroll")
    assert len(after["reroll"]) == len(before["reroll"]) + 1
    x0, y0, x1, y1 = after["reroll"][-1]["box"]
    assert abs(x0 - 0.1) < 0.03 and abs(y0 - 0.2) < 0.03 and abs(x1 - 0.6) < 0.03 and abs(y1 - 0.7) < 0.03
    assert {k: v for k, v in after.items() if k != "reroll"} == {"keep": 0.5, "vary": "reroll"}  # the rest as it was
    assert after["reroll"][:-1] == before["reroll"] and after["reroll"][-1]["seed"] == 5  # the last region's seed
    page.locator(".initedit-phrase").first.fill("dog")
    drag(1, (0.5, 0.5), (0.9, 0.95))
    layout = spec_of("InitEditLayout")["layout"]
    assert layout[-1]["phrase"] == "dog" and abs(layout[-1]["box"][2] - 0.9) < 0.03
    page.locator(".initedit-remove-last").nth(1).click()
    assert len(spec_of("InitEditLayout")["layout"]) == len(layout) - 1
    assert page.errors == []
