"""Write the UI-format example workflows (what ComfyUI's template browser and *Open* expect) from the API-format
ones in example_workflows/api/, through the real frontend of a running ComfyUI (headless Debian chromium):
``python3 tests/tooling/comfy_ui_workflows.py [URL] [--shots DIR]``. Seeds are set to "fixed" (a reroll keeps the
seed). With --shots, a screenshot of each graph is saved there too."""
import json
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
FIT = """() => { const c = window.app.canvas; const ns = window.app.graph._nodes; let x0 = 1e9, y0 = 1e9, x1 = -1e9, y1 = -1e9;
  for (const n of ns) { x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 30);
    x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]); }
  const W = c.canvas.width / devicePixelRatio, H = c.canvas.height / devicePixelRatio;
  const s = Math.min(W / (x1 - x0 + 80), (H - 60) / (y1 - y0 + 80), 1.2);
  c.ds.scale = s; c.ds.offset = [-x0 + 40, -y0 + 40 + 60 / s]; window.app.graph.setDirtyCanvas(true, true); }"""


def open_app(playwright, url):
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_function("window.app && window.app.graph", timeout=120000)
    time.sleep(2)
    page.keyboard.press("Escape")  # the first-run template dialog
    for sel in ["button[aria-label='Close']", ".p-dialog-close-button"]:
        try:
            if page.locator(sel).count():
                page.locator(sel).first.click(timeout=3000)
        except Exception:  # no dialog
            pass
    return browser, page


def main():
    from playwright.sync_api import sync_playwright

    url = next((a for a in sys.argv[1:] if a.startswith("http")), "http://127.0.0.1:8188")
    shots = sys.argv[sys.argv.index("--shots") + 1] if "--shots" in sys.argv else None
    with sync_playwright() as p:
        browser, page = open_app(p, url)
        for api in sorted((REPO / "example_workflows" / "api").glob("*.json")):
            page.evaluate("async (g) => { await window.app.loadApiJson(g, 'example'); }", json.loads(api.read_text()))
            time.sleep(1)
            page.evaluate("""() => { const g = window.app.graph; if (g.arrange) g.arrange(60);
              for (const n of g._nodes) for (const w of n.widgets || [])
                if (w.name === 'control_after_generate') w.value = 'fixed'; }""")
            time.sleep(1)
            ui = page.evaluate("() => window.app.graph.serialize()")
            (REPO / "example_workflows" / api.name).write_text(json.dumps(ui, indent=1) + "\n")
            if shots:
                page.evaluate(FIT)
                time.sleep(1)
                page.screenshot(path=str(pathlib.Path(shots) / api.name.replace(".json", ".png")))
            print("wrote", api.name, [n["type"] for n in ui["nodes"]])
        browser.close()


if __name__ == "__main__":
    main()
