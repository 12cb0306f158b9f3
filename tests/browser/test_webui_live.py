"""InitEdit in the real A1111 WebUI page, in headless Chromium.

Needs a running WebUI with InitEdit installed: INITEDIT_WEBUI_URL=http://127.0.0.1:7881 (see
../shared/webui-lab/README.md: run_webui.sh tiny-sd15 7881). Skipped with the reason otherwise.
Screenshots: $INITEDIT_SHOT_DIR (default a temp folder).
"""
from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from tests.browser import editor_driver as drv

HERE = Path(__file__).resolve().parent

URL = os.environ.get("INITEDIT_WEBUI_URL", "").rstrip("/")
ROOT_SEL = ".initedit-root[data-tab=txt2img]"


def _reachable(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url + "/sdapi/v1/scripts", timeout=10) as r:
            names = json.load(r).get("txt2img", [])
    except Exception as e:  # noqa: BLE001 - any failure means: no usable WebUI
        return f"INITEDIT_WEBUI_URL={url} is not reachable ({e.__class__.__name__}: {e})"
    if "initedit" not in names:
        return f"the WebUI at {url} has no InitEdit script (txt2img scripts: {', '.join(names)})"
    return None


pytestmark = pytest.mark.skipif(not URL, reason="set INITEDIT_WEBUI_URL to a running WebUI with InitEdit installed")


@pytest.fixture(scope="module")
def page(browser):
    why = _reachable(URL)
    if why:
        pytest.skip(why)
    ctx = browser.new_context(viewport={"width": 1500, "height": 1300})
    pg = ctx.new_page()
    pg.errors = []
    # only errors from our files count: the WebUI itself logs "reading 'props'" from gradio when any
    # InputAccordion (Hires. fix too) is opened
    pg.on("pageerror", lambda e: pg.errors.append(e.stack or str(e)) if "initedit" in (e.stack or "").lower() else None)
    pg.goto(URL, wait_until="domcontentloaded", timeout=180_000)
    pg.wait_for_selector(f"{ROOT_SEL} canvas.initedit-canvas", state="attached", timeout=180_000)
    yield pg
    ctx.close()


def _ids(page):
    return page.evaluate(f"""() => {{ const r = document.querySelector('{ROOT_SEL}');
        return {{spec: r.dataset.specId, acc: r.dataset.accordionId}}; }}""")


def _set_number(page, elem_id, value):
    loc = page.locator(f"#{elem_id} input[type=number]").first
    loc.fill(str(value))
    loc.press("Enter")


def _spec(page):
    return drv.spec(page, f"#{_ids(page)['spec']} textarea")


def _small_image(page):
    """128 x 128, 4 steps: a generation of a few seconds on the CPU."""
    page.fill("#txt2img_prompt textarea", "a cat and a red car")
    for elem, v in (("txt2img_width", 128), ("txt2img_height", 128), ("txt2img_steps", 4)):
        _set_number(page, elem, v)


def _open_accordion(page):
    """Open (and so enable) the InitEdit accordion when it is closed: each test can run on its own."""
    acc = page.locator(f"#{_ids(page)['acc']}")
    if not page.locator(f"#{_ids(page)['acc']}-checkbox input").first.is_checked():
        acc.locator(".label-wrap").first.click()
    canvas = drv.canvas(page, ROOT_SEL)
    canvas.wait_for(state="visible")
    canvas.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    return acc


def _resolved_spec(infotext: str) -> dict:
    """The InitEdit value of an infotext (json-quoted by the WebUI, or bare JSON)."""
    obj, _ = json.JSONDecoder().raw_decode(infotext.split("InitEdit: ", 1)[1])
    return json.loads(obj) if isinstance(obj, str) else obj


def test_accordion_draw_resize_generate_infotext(page, shot_dir):
    ids = _ids(page)
    _small_image(page)

    acc = _open_accordion(page)  # open = enable
    assert page.locator(f"#{ids['acc']}-checkbox input").first.is_checked()

    drv.drag(page, (0.2, 0.2), (0.5, 0.6), scope=ROOT_SEL)
    s = _spec(page)
    assert len(s["reroll"]) == 1 and drv.close(s["reroll"][0]["box"], [0.2, 0.2, 0.5, 0.6]), s
    drv.drag(page, (0.5, 0.6), (0.7, 0.8), scope=ROOT_SEL)  # resize by the corner
    assert drv.close(_spec(page)["reroll"][0]["box"], [0.2, 0.2, 0.7, 0.8])

    page.click(f"{ROOT_SEL} .initedit-tab[data-tab=layout]")
    drv.drag(page, (0.55, 0.1), (0.95, 0.45), scope=ROOT_SEL)
    page.click(f"{ROOT_SEL} .initedit-word:text-is('cat')")
    assert _spec(page)["layout"][0]["phrase"] == "cat"
    page.click(f"{ROOT_SEL} .initedit-tab[data-tab=reroll]")
    if page.locator(f"{ROOT_SEL} .initedit-seed-warn").is_visible():
        page.click(f"{ROOT_SEL} .initedit-fix-seed")
        page.wait_for_timeout(500)
    assert page.input_value("#txt2img_seed input") != "-1"
    acc.screenshot(path=str(shot_dir / "webui_accordion_boxes.png"))
    # idle means idle: no animation frames and no DOM churn (the WebUI re-runs its callbacks on DOM changes)
    page.wait_for_timeout(1500)  # let the clicks above settle
    page.evaluate("""() => { window.__ieMut = 0; window.__ieRaf = 0; window.__ieWhat = [];
        new MutationObserver(m => { window.__ieMut += m.length;
            m.slice(0, 3).forEach(r => window.__ieWhat.push(r.type + ' ' + (r.target.id || r.target.className || r.target.nodeName) + ' ' + (r.attributeName || ''))); }).observe(gradioApp(),
            {childList: true, subtree: true, attributes: true, characterData: true});
        const raf = window.requestAnimationFrame;
        // count only our frames: gradio's own svelte loop may be animating a spinner elsewhere on the page
        window.requestAnimationFrame = f => { if (/initedit/i.test(new Error().stack)) window.__ieRaf++; return raf(f); }; }""")
    page.wait_for_timeout(2000)
    assert page.evaluate("[window.__ieMut, window.__ieRaf]") == [0, 0], page.evaluate("window.__ieWhat.slice(0, 12)")

    page.click("#txt2img_generate")
    page.wait_for_function(
        "() => (document.querySelector('#generation_info_txt2img textarea') || {}).value?.includes('InitEdit')",
        timeout=300_000)
    info = json.loads(page.input_value("#generation_info_txt2img textarea"))
    assert "InitEdit:" in info["infotexts"][0]
    resolved = _resolved_spec(info["infotexts"][0])
    assert resolved["reroll"][0]["seed"] >= 0  # the server resolved -1
    page.click(f"{ROOT_SEL} .initedit-tab-body[data-tab=reroll] .initedit-chip >> nth=0")
    page.click(f"{ROOT_SEL} .initedit-seed-reuse")  # ♻️: keep the seed the region just had
    assert _spec(page)["reroll"][0]["seed"] == resolved["reroll"][0]["seed"]
    page.wait_for_selector("#txt2img_gallery img", timeout=60_000)
    page.click(f"{ROOT_SEL} .initedit-bg-last")
    page.wait_for_timeout(500)
    page.screenshot(path=str(shot_dir / "webui_after_generate.png"), full_page=False)
    assert not page.errors, page.errors


def test_paste_restores_boxes(page, shot_dir):
    """Paste of an InitEdit infotext (the ↙️ button) puts the boxes back on the canvas. Self-sufficient: the
    infotext is written here, as the WebUI writes one (the spec json-quoted), with a field the spec's old
    versions lacked left out (it comes back with its legacy value)."""
    spec = {"reroll": [{"box": [0.2, 0.2, 0.7, 0.8], "seed": 1234, "strength": 0.75, "feather": 0.05}],
            "layout": [{"phrase": "cat", "box": [0.55, 0.1, 0.95, 0.45]}], "vary": "reroll"}
    infotext = ("a cat and a red car\nSteps: 4, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, Seed: 1, "
                f"Size: 128x128, InitEdit: {json.dumps(json.dumps(spec))}, Version: v1.10.1")
    _open_accordion(page)
    for tab in ("reroll", "layout"):
        page.click(f"{ROOT_SEL} .initedit-tab[data-tab={tab}]")
        page.click(f"{ROOT_SEL} .initedit-tab-body[data-tab={tab}] .initedit-clear")
    assert _spec(page) == {}
    page.fill("#txt2img_prompt textarea", infotext)
    page.click("#paste")
    page.wait_for_function(
        f"() => (window.InitEdit.mounts.find(m => m.root.matches('{ROOT_SEL}')).editor.spec.reroll.length) > 0",
        timeout=30_000)
    st = page.evaluate(f"window.InitEdit.mounts.find(m => m.root.matches('{ROOT_SEL}')).editor.spec")
    assert drv.close(st["reroll"][0]["box"], [0.2, 0.2, 0.7, 0.8]) and st["layout"][0]["phrase"] == "cat"
    assert st["reroll"][0]["seed"] == 1234 and st["vary"] == "reroll"
    from lib_initedit.spec import parse_infotext

    assert _spec(page) == parse_infotext(json.dumps(spec)).to_dict()  # legacy values written in full
    assert page.locator(f"#{_ids(page)['acc']}-checkbox input").first.is_checked()  # paste turns it on
    assert page.locator(f"{ROOT_SEL} .initedit-tab-body[data-tab=layout] .initedit-chip").count() == 1
    page.locator(f"#{_ids(page)['acc']}").screenshot(path=str(shot_dir / "webui_pasted.png"))
    assert not page.errors, page.errors


def test_new_sliders_write_the_spec(page):
    """Keep the rest (Reroll tab), Guidance and Guided steps (Layout tab) in the real page."""
    set_range = "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }"
    _open_accordion(page)
    page.click(f"{ROOT_SEL} .initedit-tab[data-tab=reroll]")
    if not _spec(page).get("reroll"):
        drv.drag(page, (0.2, 0.2), (0.5, 0.5), scope=ROOT_SEL)
    page.locator(f"{ROOT_SEL} [data-field=keep]").evaluate(set_range, 0.4)
    page.click(f"{ROOT_SEL} .initedit-tab[data-tab=layout]")
    page.locator(f"{ROOT_SEL} [data-field=guidance]").evaluate(set_range, 3)
    page.locator(f"{ROOT_SEL} [data-field=guidance_steps]").evaluate(set_range, 0.5)
    s = _spec(page)
    assert (s["keep"], s["guidance"], s["guidance_steps"]) == (0.4, 3, 0.5), s
    page.click(f"{ROOT_SEL} .initedit-tab[data-tab=reroll]")
    assert not page.errors, page.errors


def test_mask_and_heatmaps_generate(page, shot_dir):
    """A painted mask region and a layout box with probe heatmaps: the server accepts the mask PNG and
    the gallery gains the heatmap images."""
    _small_image(page)
    _open_accordion(page)
    page.click(f"{ROOT_SEL} .initedit-bg-last")  # the background follows the newest output
    for tab in ("reroll", "layout"):
        page.click(f"{ROOT_SEL} .initedit-tab[data-tab={tab}]")
        page.click(f"{ROOT_SEL} .initedit-tab-body[data-tab={tab}] .initedit-clear")
    page.click(f"{ROOT_SEL} .initedit-tab[data-tab=reroll]")
    page.click(f"{ROOT_SEL} .initedit-tool-brush")
    drv.drag(page, (0.2, 0.7), (0.8, 0.75), scope=ROOT_SEL, steps=10)
    page.click(f"{ROOT_SEL} .initedit-tool-box")
    page.click(f"{ROOT_SEL} .initedit-tab[data-tab=layout]")
    drv.drag(page, (0.1, 0.1), (0.45, 0.5), scope=ROOT_SEL)
    page.click(f"{ROOT_SEL} .initedit-word:text-is('red car')")
    page.check(f"{ROOT_SEL} [data-field=heatmaps]")
    s = _spec(page)
    assert "mask" in s["reroll"][0] and s["layout"][0]["phrase"] == "red car" and s["heatmaps"] is True
    page.evaluate("document.querySelector('#generation_info_txt2img textarea').value = ''")
    page.click("#txt2img_generate")
    page.wait_for_function(
        "() => (document.querySelector('#generation_info_txt2img textarea') || {}).value?.includes('InitEdit')",
        timeout=300_000)
    info = json.loads(page.input_value("#generation_info_txt2img textarea"))
    assert '\\"mask\\"' in info["infotexts"][0] or '"mask"' in info["infotexts"][0]
    assert len(info["infotexts"]) >= 2, "heatmaps on: the outputs gain the probe's heatmap images"
    # "Last image" was chosen above: the background follows the new output by itself
    page.wait_for_function(f"""() => {{ const m = window.InitEdit.mounts.find(m => m.root.matches('{ROOT_SEL}'));
        const img = m.galleryImage(); return m.bgMode === 'last' && img && m.bgSrc === img.src; }}""", timeout=10_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(shot_dir / "webui_mask_heatmaps.png"))
    assert not page.errors, page.errors


def test_server_error_is_shown_in_the_accordion(page, shot_dir):
    """A layout box without a phrase: the server refuses the spec, names the field, and the panel says so."""
    _small_image(page)
    _open_accordion(page)
    for tab in ("reroll", "layout"):
        page.click(f"{ROOT_SEL} .initedit-tab[data-tab={tab}]")
        page.click(f"{ROOT_SEL} .initedit-tab-body[data-tab={tab}] .initedit-clear")
    drv.drag(page, (0.1, 0.1), (0.5, 0.5), scope=ROOT_SEL)
    assert _spec(page)["layout"][0]["phrase"] == ""
    assert page.locator(f"{ROOT_SEL} .initedit-phrase-warn").is_visible()
    # before Generate: the server's parser (POST /initedit/v1/validate) names the field in the accordion
    invalid = page.locator(f"{ROOT_SEL} .initedit-invalid")
    invalid.wait_for(state="visible", timeout=10_000)
    assert "layout[0].phrase" in invalid.inner_text()
    page.evaluate("document.querySelector('#generation_info_txt2img textarea').value = ''")
    page.click("#txt2img_generate")
    page.wait_for_function(
        "() => (document.querySelector('#generation_info_txt2img textarea') || {}).value?.includes('Steps')",
        timeout=300_000)
    note = page.locator(f"{ROOT_SEL} .initedit-last-note")
    note.wait_for(state="visible", timeout=10_000)
    assert "not applied" in note.inner_text() and "layout[0].phrase" in note.inner_text()
    page.locator(f"#{_ids(page)['acc']}").screenshot(path=str(shot_dir / "webui_server_error.png"))
    page.click(f"{ROOT_SEL} .initedit-tab-body[data-tab=layout] .initedit-clear")
    assert not page.errors, page.errors
