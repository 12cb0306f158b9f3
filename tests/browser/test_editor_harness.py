"""The box editor in a real (headless) Chromium, on a static page that mocks the txt2img fields it reads.

Drives the canvas with the mouse and keyboard and checks the spec JSON in the textbox after each gesture.
"""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from lib_initedit.spec import parse_spec  # the authority on the spec
from lib_initedit.webui import api
from lib_initedit.webui.args import spec_facts
from tests.browser import editor_driver as drv

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SPEC_TA = "#script_txt2img_initedit_spec textarea"

_read_spec = drv.spec


def _checked_spec(page, *a, **kw):
    """The spec JSON in the textbox, checked: the server parses it and writes back exactly the same."""
    s = _read_spec(page, *a, **kw)
    assert parse_spec(s).to_dict() == s, s
    return s


drv.spec = _checked_spec
ORIGIN = "http://initedit.harness"


def _serve(route):
    """The harness page and the validate route, answered by this process (the route by the Python parser)."""
    url = route.request.url
    if url.endswith(api.VALIDATE_ROUTE):
        body = json.loads(route.request.post_data or "null")
        route.fulfill(status=200, content_type="application/json", body=json.dumps(api.validate(body)))
        return
    path = ROOT / url[len(ORIGIN):].lstrip("/").split("?")[0]
    if path.is_file() and ROOT in path.resolve().parents:
        route.fulfill(status=200, body=path.read_bytes(), content_type="text/html" if path.suffix == ".html" else None)
    else:
        route.fulfill(status=404, body="")


def open_harness(browser, validate=True, reverse=False, **ctx):
    context = browser.new_context(viewport={"width": 700, "height": 1000}, **ctx)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.validations = []
    page.on("request", lambda r: page.validations.append(r.post_data) if r.url.endswith(api.VALIDATE_ROUTE) else None)
    context.route(ORIGIN + "/**", _serve)
    page.goto(ORIGIN + "/tests/browser/harness.html")
    # what lib_initedit/webui/ui.py renders on the root: the spec's facts, and the validate route
    page.evaluate("""([facts, url]) => { const r = document.querySelector('.initedit-root');
        r.dataset.specFacts = facts; if (url) r.dataset.validateUrl = url; }""",
                  [json.dumps(spec_facts()), "/" + api.VALIDATE_ROUTE.lstrip("/") if validate else None])
    page.add_style_tag(path=str(ROOT / "style.css"))
    for js in sorted((ROOT / "javascript").glob("*.js"), reverse=reverse):  # the WebUI loads them sorted by name
        page.add_script_tag(path=str(js))
    page.evaluate("InitEdit.mountAll()")
    page.wait_for_timeout(100)
    page.errors = errors
    return page


@pytest.fixture()
def page(browser):
    p = open_harness(browser)
    yield p
    assert not p.errors, p.errors
    p.context.close()


def test_draw_resize_move_delete(page, shot_dir):
    drv.drag(page, (0.2, 0.3), (0.5, 0.6))
    s = drv.spec(page)
    assert len(s["reroll"]) == 1
    r = s["reroll"][0]
    assert drv.close(r["box"], [0.2, 0.3, 0.5, 0.6]), r
    assert r["seed"] == -1 and r["strength"] == 1 and set(r) == {"box", "seed", "strength", "feather"}
    assert page.evaluate("window.specInputs") >= 1  # gradio is told through an input event

    drv.drag(page, (0.5, 0.6), (0.7, 0.8))  # bottom-right corner
    assert drv.close(drv.spec(page)["reroll"][0]["box"], [0.2, 0.3, 0.7, 0.8])
    drv.drag(page, (0.2, 0.5), (0.1, 0.5))  # left edge only
    assert drv.close(drv.spec(page)["reroll"][0]["box"], [0.1, 0.3, 0.7, 0.8])
    drv.drag(page, (0.4, 0.5), (0.5, 0.4))  # inside: move
    assert drv.close(drv.spec(page)["reroll"][0]["box"], [0.2, 0.2, 0.8, 0.7])
    drv.drag(page, (0.5, 0.5), (0.9, 0.5))  # move stops at the image border
    assert drv.close(drv.spec(page)["reroll"][0]["box"], [0.4, 0.2, 1.0, 0.7])

    drv.drag(page, (0.05, 0.75), (0.3, 0.95))  # a second region
    assert len(drv.spec(page)["reroll"]) == 2
    assert page.inner_text(".initedit-summary") == "2 regions"
    page.screenshot(path=str(shot_dir / "harness_two_boxes.png"))
    page.keyboard.press("Delete")
    s = drv.spec(page)
    assert len(s["reroll"]) == 1 and drv.close(s["reroll"][0]["box"], [0.4, 0.2, 1.0, 0.7])

    page.mouse.click(*drv.to_px(page, (0.6, 0.5)))  # select, then delete with the panel's button
    page.click(".initedit-tab-body[data-tab=reroll] .initedit-delete")
    assert drv.spec(page) == {}


def test_the_editor_works_whatever_order_its_files_load_in(browser):
    """Each file adds to shared prototypes and helpers, so no file depends on another having loaded first."""
    page = open_harness(browser, reverse=True)
    drv.drag(page, (0.2, 0.3), (0.5, 0.6))
    assert len(drv.spec(page)["reroll"]) == 1 and page.inner_text(".initedit-summary") == "1 region"
    assert not page.errors, page.errors
    page.context.close()


def test_tiny_drag_is_a_click_not_a_box(page):
    drv.drag(page, (0.5, 0.5), (0.502, 0.501), steps=2)
    assert drv.spec(page) == {}


def test_keyboard_nudge_and_resize(page):
    drv.drag(page, (0.25, 0.25), (0.5, 0.5))
    b0 = drv.spec(page)["reroll"][0]["box"]
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowDown")
    b1 = drv.spec(page)["reroll"][0]["box"]
    assert b1[0] == pytest.approx(b0[0] + 1 / 512, abs=2e-4) and b1[1] == pytest.approx(b0[1] + 10 / 512, abs=2e-4)
    page.keyboard.press("Alt+ArrowRight")  # grow the right edge
    b2 = drv.spec(page)["reroll"][0]["box"]
    assert b2[0] == b1[0] and b2[2] == pytest.approx(b1[2] + 1 / 512, abs=2e-4)


def test_region_fields_seed_strength_feather(page):
    drv.drag(page, (0.1, 0.1), (0.4, 0.4))
    page.fill(".initedit-seed", "1234")
    page.press(".initedit-seed", "Enter")
    page.locator("[data-field=strength-num]").fill("0.5")
    page.locator("[data-field=strength-num]").press("Enter")
    page.locator("[data-field=feather]").evaluate("el => { el.value = 0.2; el.dispatchEvent(new Event('input')); }")
    r = drv.spec(page)["reroll"][0]
    assert (r["seed"], r["strength"], r["feather"]) == (1234, 0.5, 0.2)
    page.click(".initedit-seed-random")
    assert drv.spec(page)["reroll"][0]["seed"] == -1
    page.select_option("[data-field=vary]", "reroll")
    page.check("[data-field=hires]")
    s = drv.spec(page)
    assert s["vary"] == "reroll" and s["hires"] is True


def test_reuse_resolved_seed_from_generation_info(page):
    drv.drag(page, (0.1, 0.1), (0.4, 0.4))
    resolved = {"reroll": [{"box": [0.1, 0.1, 0.4, 0.4], "seed": 987654, "strength": 1, "feather": 0.05}]}
    infotext = "a cat\nSteps: 4, Seed: 42, InitEdit: " + json.dumps(json.dumps(resolved)) + ", Version: v1.10.1"
    page.evaluate("t => document.querySelector('#generation_info_txt2img textarea').value = t",
                  json.dumps({"seed": 42, "infotexts": [infotext]}))
    page.click(".initedit-seed-reuse")
    assert drv.spec(page)["reroll"][0]["seed"] == 987654
    page.click(".initedit-seed-random")
    drv.drag(page, (0.5, 0.5), (0.7, 0.7))  # a second region has no seed in that generation: stays random
    page.click(".initedit-seed-reuse-all")
    assert [r["seed"] for r in drv.spec(page)["reroll"]] == [987654, -1]
    assert page.input_value(".initedit-seed") == "-1"  # region 2 is selected


def test_main_seed_warning_and_fix(page):
    warn = page.locator(".initedit-seed-warn")
    assert warn.is_visible()
    page.evaluate("document.querySelector('#generation_info_txt2img textarea').value = JSON.stringify({seed: 4242, infotexts: []})")
    page.click(".initedit-fix-seed")
    page.wait_for_timeout(400)
    assert page.input_value("#txt2img_seed input") == "4242"
    assert not warn.is_visible()
    page.fill("#txt2img_seed input", "-1")  # typing -1 again brings the warning back
    page.wait_for_timeout(50)
    assert warn.is_visible()


def test_mask_brush_writes_png_with_image_aspect(page, shot_dir):
    page.fill("#txt2img_height input[type=number]", "256")  # 512 x 256
    page.wait_for_timeout(100)
    page.click(".initedit-tool-brush")
    drv.drag(page, (0.2, 0.5), (0.6, 0.5), steps=12)
    s = drv.spec(page)
    assert len(s["reroll"]) == 1 and "mask" in s["reroll"][0] and "box" not in s["reroll"][0]
    Image = pytest.importorskip("PIL.Image")
    raw = base64.b64decode(s["reroll"][0]["mask"], validate=True)
    assert raw.startswith(b"\x89PNG")
    im = Image.open(io.BytesIO(raw)).convert("L")
    assert im.size == (64, 32)  # the image's aspect at latent resolution (512 x 256 / 8)
    assert im.getpixel((25, 16)) > 200 and im.getpixel((3, 3)) < 30  # painted stroke white, rest black
    page.screenshot(path=str(shot_dir / "harness_mask.png"))
    # erase most of it with the right button, then it is still a valid mask
    drv.drag(page, (0.2, 0.5), (0.4, 0.5), steps=8, button="right")
    im2 = Image.open(io.BytesIO(base64.b64decode(drv.spec(page)["reroll"][0]["mask"]))).convert("L")
    assert im2.getpixel((19, 16)) < 30 and im2.getpixel((35, 16)) > 200


def test_layout_phrase_from_prompt_and_live_check(page, shot_dir):
    page.click(".initedit-tab[data-tab=layout]")
    drv.drag(page, (0.05, 0.4), (0.45, 0.9))
    page.click(".initedit-word:text-is('cat')")
    drv.drag(page, (0.55, 0.3), (0.95, 0.8))
    page.click(".initedit-word:text-is('red car')")
    page.fill("[data-field=rounds]", "3")
    page.press("[data-field=rounds]", "Enter")
    page.fill("[data-field=candidates]", "12")  # above the limit: clamped to the spec's maximum
    page.press("[data-field=candidates]", "Enter")
    page.check("[data-field=heatmaps]")
    page.select_option("[data-field=method]", "rebuild")
    s = drv.spec(page)
    assert [b["phrase"] for b in s["layout"]] == ["cat", "red car"]
    assert s["rounds"] == 3 and s["heatmaps"] is True and s["method"] == "rebuild"
    from lib_initedit.spec import MAX_CANDIDATES
    assert s["candidates"] == MAX_CANDIDATES and page.input_value("[data-field=candidates]") == str(MAX_CANDIDATES)
    assert "reroll" not in s
    warn = page.locator(".initedit-phrase-warn")
    assert not warn.is_visible()
    page.fill("#txt2img_prompt textarea", "a cat and a blue bus")  # the phrase no longer occurs
    page.wait_for_timeout(100)
    assert warn.is_visible() and "red car" in warn.inner_text()
    page.fill(".initedit-phrase", "Blue Bus")  # typed, case-insensitive match
    page.wait_for_timeout(50)
    assert not warn.is_visible() and drv.spec(page)["layout"][1]["phrase"] == "Blue Bus"
    page.screenshot(path=str(shot_dir / "harness_layout.png"))


def test_programmatic_textbox_update_is_mirrored(page):
    """Paste / "Send to txt2img": gradio assigns textarea.value without events; the canvas must follow."""
    spec = {"reroll": [{"box": [0.1, 0.2, 0.3, 0.4], "seed": 7, "strength": 0.7, "feather": 0.1}],
            "layout": [{"phrase": "cat", "box": [0.5, 0.5, 0.9, 0.9]}], "vary": "reroll", "rounds": 2, "unknown": 1}
    page.evaluate("t => { document.querySelector('%s').value = t; }" % SPEC_TA, json.dumps(spec))
    page.wait_for_timeout(100)
    st = page.evaluate("InitEdit.mounts[0].editor.spec")
    assert st["reroll"][0]["seed"] == 7 and st["layout"][0]["phrase"] == "cat" and st["rounds"] == 2
    assert page.locator(".initedit-tab-body[data-tab=reroll] .initedit-chip").count() == 1
    # an edit after the paste writes only known keys
    drv.drag(page, (0.1, 0.2), (0.15, 0.25))  # move region 1 by its inside
    s = drv.spec(page)
    assert "unknown" not in s and s["vary"] == "reroll" and s["layout"][0]["phrase"] == "cat"
    # bad JSON: a clear message, the editor keeps its state
    page.evaluate("document.querySelector('%s').value = '{broken'" % SPEC_TA)
    page.wait_for_timeout(100)
    assert "not valid JSON" in page.inner_text(".initedit-error")


def test_box_colours_are_the_heatmaps_colours(page):
    """Box k has one colour on the canvas, in its chip and in the heatmaps (lib_initedit/layout/heatmaps.py), also
    past the palette's length."""
    from lib_initedit.layout.heatmaps import PALETTE

    boxes = [{"phrase": "cat", "box": [0.1 * k, 0.1, 0.1 * k + 0.08, 0.3]} for k in range(len(PALETTE) + 2)]
    page.evaluate("t => { document.querySelector('%s').value = t; }" % SPEC_TA, json.dumps({"layout": boxes}))
    page.wait_for_timeout(100)
    chips = page.locator(".initedit-tab-body[data-tab=layout] .initedit-chip .initedit-swatch")
    assert chips.count() == len(boxes)
    shown = [chips.nth(k).evaluate("el => getComputedStyle(el).backgroundColor") for k in range(len(boxes))]
    assert shown == ["rgb(%d, %d, %d)" % PALETTE[k % len(PALETTE)] for k in range(len(boxes))]


def test_size_follows_width_height(page):
    c = drv.canvas(page)
    page.fill("#txt2img_width input[type=number]", "768")
    page.fill("#txt2img_height input[type=number]", "384")
    page.wait_for_timeout(100)
    b = c.bounding_box()
    assert b["width"] / b["height"] == pytest.approx(2.0, rel=0.02)
    page.evaluate("document.querySelector('#txt2img_height input[type=number]').value = 768")  # as gradio would
    page.wait_for_timeout(100)
    b = c.bounding_box()
    assert b["width"] / b["height"] == pytest.approx(1.0, rel=0.02)


def test_background_from_gallery_and_idle_is_idle(page, shot_dir):
    # a generated image in the gallery -> "Last image" draws it
    page.evaluate("""() => {
        const c = document.createElement('canvas'); c.width = c.height = 64;
        const x = c.getContext('2d'); x.fillStyle = '#2a6'; x.fillRect(0, 0, 64, 64); x.fillStyle = '#fd3'; x.fillRect(8, 8, 20, 20);
        const img = document.createElement('img'); img.src = c.toDataURL(); document.querySelector('#txt2img_gallery').appendChild(img);
    }""")
    page.click(".initedit-bg-last")
    page.wait_for_timeout(200)
    px = page.evaluate("""() => { const c = document.querySelector('canvas.initedit-canvas');
        return Array.from(c.getContext('2d').getImageData(c.width * 0.25, c.height * 0.25, 1, 1).data); }""")
    assert px[:3] == [0xff, 0xdd, 0x33]
    page.screenshot(path=str(shot_dir / "harness_background.png"))
    # nothing happening -> no frames requested (no busy loop)
    before = page.evaluate("window.rafCount")
    page.wait_for_timeout(1000)
    assert page.evaluate("window.rafCount") == before


@pytest.mark.parametrize("scale", [1, 2])
def test_any_zoom(browser, scale):
    """High-DPI screens and CSS zoom: fractions come from the canvas's on-screen rectangle."""
    page = open_harness(browser, device_scale_factor=scale)
    try:
        page.evaluate("document.querySelector('.initedit-canvas-wrap').style.transform = 'scale(0.7)'")
        page.wait_for_timeout(50)
        drv.drag(page, (0.3, 0.3), (0.6, 0.7))
        assert drv.close(drv.spec(page)["reroll"][0]["box"], [0.3, 0.3, 0.6, 0.7])
        assert not page.errors
    finally:
        page.context.close()


def test_json_toggle_shows_the_textbox_and_typing_updates_canvas(page):
    spec_box = page.locator("#script_txt2img_initedit_spec")
    assert not spec_box.is_visible()
    page.click(".initedit-json-toggle")
    assert spec_box.is_visible()
    page.fill(SPEC_TA, json.dumps({"reroll": [{"box": [0, 0, 0.5, 0.5], "seed": 3}]}))
    page.wait_for_timeout(50)
    assert page.evaluate("InitEdit.mounts[0].editor.spec.reroll[0].seed") == 3
    page.click(".initedit-json-toggle")
    assert not spec_box.is_visible()


def test_dropped_image_becomes_the_background(page):
    page.evaluate("""async () => {
        const c = document.createElement('canvas'); c.width = c.height = 32;
        const x = c.getContext('2d'); x.fillStyle = '#1e90ff'; x.fillRect(0, 0, 32, 32);
        const blob = await new Promise(r => c.toBlob(r, 'image/png'));
        const dt = new DataTransfer(); dt.items.add(new File([blob], 'bg.png', {type: 'image/png'}));
        const wrap = document.querySelector('.initedit-canvas-wrap');
        wrap.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
        wrap.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""")
    page.wait_for_timeout(300)
    px = page.evaluate("""() => { const c = document.querySelector('canvas.initedit-canvas');
        return Array.from(c.getContext('2d').getImageData(c.width / 2, c.height / 2, 1, 1).data); }""")
    assert px[:3] == [0x1e, 0x90, 0xff]


def test_shift_drag_draws_over_an_existing_box(page):
    drv.drag(page, (0.1, 0.1), (0.9, 0.9))
    page.keyboard.down("Shift")
    drv.drag(page, (0.3, 0.3), (0.6, 0.6))
    page.keyboard.up("Shift")
    s = drv.spec(page)
    assert len(s["reroll"]) == 2 and drv.close(s["reroll"][0]["box"], [0.1, 0.1, 0.9, 0.9])
    assert drv.close(s["reroll"][1]["box"], [0.3, 0.3, 0.6, 0.6])


def test_typed_seed_counts_before_blur(page):
    drv.drag(page, (0.1, 0.1), (0.4, 0.4))
    page.click(".initedit-seed")
    page.keyboard.press("Control+A")
    page.keyboard.type("4321")
    assert drv.spec(page)["reroll"][0]["seed"] == 4321  # no blur/Enter yet: a Generate click would see it


def test_server_note_and_error_from_generation_info(page):
    def put(infotext):
        page.evaluate("t => { document.querySelector('#generation_info_txt2img textarea').value = t; }",
                      json.dumps({"seed": 1, "infotexts": [infotext]}))
        page.wait_for_timeout(50)

    note = page.locator(".initedit-last-note")
    assert not note.is_visible()
    put('a cat\nSteps: 4, InitEdit: "{}", InitEdit note: "layout box 0 skipped: no such phrase", Version: v1')
    assert note.is_visible() and "layout box 0 skipped: no such phrase" in note.inner_text()
    put('a cat\nSteps: 4, InitEdit error: "layout[0].phrase: must be a non-empty text", Version: v1')
    assert "not applied" in note.inner_text() and "layout[0].phrase" in note.inner_text()
    put("a cat\nSteps: 4, Version: v1")
    assert not note.is_visible()


def test_undo(page):
    drv.drag(page, (0.2, 0.2), (0.4, 0.4))
    page.wait_for_timeout(650)  # a separate step, not coalesced with the draw
    drv.drag(page, (0.3, 0.3), (0.5, 0.5))  # move
    assert drv.close(drv.spec(page)["reroll"][0]["box"], [0.4, 0.4, 0.6, 0.6])
    page.keyboard.press("Control+z")
    assert drv.close(drv.spec(page)["reroll"][0]["box"], [0.2, 0.2, 0.4, 0.4])
    page.click(".initedit-undo")
    assert drv.spec(page) == {}
    page.click(".initedit-undo")  # nothing left: stays empty
    assert drv.spec(page) == {}


def test_size_readout_while_drawing(page, shot_dir):
    x0, y0 = drv.to_px(page, (0.25, 0.25))
    x1, y1 = drv.to_px(page, (0.75, 0.5))
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=5)
    page.wait_for_timeout(50)
    drv.canvas(page).screenshot(path=str(shot_dir / "harness_drawing.png"))
    page.mouse.up()
    assert drv.close(drv.spec(page)["reroll"][0]["box"], [0.25, 0.25, 0.75, 0.5])


def test_move_a_painted_mask(page):
    page.click(".initedit-tool-brush")
    drv.drag(page, (0.2, 0.5), (0.3, 0.5), steps=4)
    page.click(".initedit-tool-box")
    Image = pytest.importorskip("PIL.Image")

    def white_at(fx, fy):
        im = Image.open(io.BytesIO(base64.b64decode(drv.spec(page)["reroll"][0]["mask"]))).convert("L")
        return im.getpixel((int(fx * im.width), int(fy * im.height))) > 200

    assert white_at(0.25, 0.5) and not white_at(0.65, 0.5)
    drv.drag(page, (0.25, 0.5), (0.65, 0.5))  # in box mode, dragging a mask moves it
    assert not white_at(0.25, 0.5) and white_at(0.65, 0.5)
    assert len(drv.spec(page)["reroll"]) == 1


def _set_slider(page, name, value):
    """Drag-like: set the range input and fire its input event, as a slider drag does."""
    page.locator(f"[data-field={name}]").evaluate("(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", value)


def test_keep_the_rest_slider(page):
    slider = page.locator("[data-slider=keep]")
    assert slider.is_visible()  # on the Reroll tab, plainly labelled, with a tooltip that says what it does
    assert "Keep the rest" in slider.inner_text()
    assert "outside the regions" in slider.get_attribute("title")
    rng = page.locator("[data-field=keep]")
    facts = spec_facts()
    keep = next(f for f in facts["fields"] if f["name"] == "keep")
    assert (float(rng.get_attribute("min")), float(rng.get_attribute("max")), rng.get_attribute("step")) == \
        (keep["min"], keep["max"], "0.05")
    drv.drag(page, (0.1, 0.1), (0.4, 0.4))
    assert drv.spec(page)["keep"] == keep["default"]  # written with the regions, as to_dict writes it
    _set_slider(page, "keep", 0.35)
    assert drv.spec(page)["keep"] == 0.35
    page.locator("[data-field=keep-num]").fill("0.8")
    page.locator("[data-field=keep-num]").press("Enter")
    assert drv.spec(page)["keep"] == 0.8
    page.locator("[data-field=keep-num]").fill("7")  # out of range: clamped to the server's limit on change
    page.locator("[data-field=keep-num]").press("Enter")
    assert drv.spec(page)["keep"] == keep["max"]
    # a pasted spec moves the slider
    page.evaluate("t => { document.querySelector('%s').value = t; }" % SPEC_TA,
                  json.dumps({"reroll": [{"box": [0, 0, 0.5, 0.5]}], "keep": 0.25}))
    page.wait_for_timeout(100)
    assert float(page.input_value("[data-field=keep]")) == 0.25 and page.input_value("[data-field=keep-num]") == "0.25"


def test_keep_band_slider_beside_keep(page):
    band = page.locator("[data-slider=keep_band]")
    assert band.is_visible() and "Band" in band.inner_text() and "released gradually" in band.get_attribute("title")
    row = page.locator(".initedit-keep-row")
    assert row.locator("[data-slider=keep]").count() == 1 and row.locator("[data-slider=keep_band]").count() == 1
    facts = next(f for f in spec_facts()["fields"] if f["name"] == "keep_band")
    rng = page.locator("[data-field=keep_band]")
    assert (float(rng.get_attribute("min")), float(rng.get_attribute("max"))) == (facts["min"], facts["max"])
    drv.drag(page, (0.1, 0.1), (0.4, 0.4))
    assert drv.spec(page)["keep_band"] == facts["default"]  # written with the regions, as to_dict writes it
    _set_slider(page, "keep_band", 0.15)
    assert drv.spec(page)["keep_band"] == 0.15
    page.locator("[data-field=keep_band-num]").fill("3")  # out of range: clamped to the server's limit
    page.locator("[data-field=keep_band-num]").press("Enter")
    assert drv.spec(page)["keep_band"] == facts["max"]
    page.evaluate("t => { document.querySelector('%s').value = t; }" % SPEC_TA,  # a pasted spec moves it
                  json.dumps({"reroll": [{"box": [0, 0, 0.5, 0.5]}], "keep": 1, "keep_band": 0.05}))
    page.wait_for_timeout(100)
    assert float(page.input_value("[data-field=keep_band]")) == 0.05


def test_layout_guidance_sliders(page):
    page.click(".initedit-tab[data-tab=layout]")
    facts = {f["name"]: f for f in spec_facts()["fields"]}
    g, gs = page.locator("[data-field=guidance]"), page.locator("[data-field=guidance_steps]")
    assert g.is_visible() and gs.is_visible() and not page.locator("[data-slider=keep]").is_visible()
    assert float(g.get_attribute("max")) == facts["guidance"]["max"] and float(gs.get_attribute("max")) == 1
    assert float(page.input_value("[data-field=guidance_steps]")) == facts["guidance_steps"]["default"]
    drv.drag(page, (0.1, 0.1), (0.5, 0.5))
    page.click(".initedit-word:text-is('cat')")
    s = drv.spec(page)  # (checked: exactly what parse_spec(s).to_dict() writes)
    pinned = {k for k, sections in spec_facts()["pinned"].items() if "layout" in sections}
    assert "guidance" in pinned and pinned <= set(s) and s["guidance"] == facts["guidance"]["default"]
    _set_slider(page, "guidance", 4.5)
    _set_slider(page, "guidance_steps", 0.6)
    s = drv.spec(page)
    assert (s["guidance"], s["guidance_steps"]) == (4.5, 0.6)
    assert "Guidance" in page.locator("[data-slider=guidance]").inner_text()
    assert "Guided steps" in page.locator("[data-slider=guidance_steps]").inner_text()


def test_masks_follow_their_region_not_its_position(page):
    """The model keys masks by region: deleting the first of two masks leaves the second one's PNG and its
    drawing; undo brings the first back with its own mask."""
    Image = pytest.importorskip("PIL.Image")
    page.click(".initedit-tool-brush")
    drv.drag(page, (0.1, 0.2), (0.3, 0.2), steps=4)  # region 1: top-left stroke
    page.keyboard.press("Escape")  # deselect: the next stroke starts a new region
    drv.drag(page, (0.6, 0.8), (0.9, 0.8), steps=4)  # region 2: bottom-right stroke
    s = drv.spec(page)
    assert len(s["reroll"]) == 2
    first, second = s["reroll"][0]["mask"], s["reroll"][1]["mask"]
    assert first != second
    page.wait_for_timeout(650)  # a separate undo step
    page.click(".initedit-tab-body[data-tab=reroll] .initedit-chip >> nth=0")
    page.click(".initedit-tab-body[data-tab=reroll] .initedit-delete")
    s = drv.spec(page)
    assert [r["mask"] for r in s["reroll"]] == [second]
    model = "InitEdit.mounts[0].editor.model"
    assert page.evaluate(f"{model}.masks.size") == 1
    assert page.evaluate(f"{model}.maskOf({model}.spec.reroll[0]) !== null")
    page.wait_for_timeout(100)
    # the canvas shows the remaining mask where it was painted (region colours follow the list: now colour 0)
    px = page.evaluate("""() => { const c = document.querySelector('canvas.initedit-canvas');
        const at = (fx, fy) => Array.from(c.getContext('2d').getImageData(c.width * fx, c.height * fy, 1, 1).data);
        return [at(0.75, 0.8), at(0.2, 0.2)]; }""")
    assert px[0][:3] != px[1][:3]
    im = Image.open(io.BytesIO(base64.b64decode(second))).convert("L")
    assert im.getpixel((int(0.75 * im.width), int(0.8 * im.height))) > 200
    page.click(".initedit-undo")
    s = drv.spec(page)
    assert [r["mask"] for r in s["reroll"]] == [first, second]
    assert page.evaluate(f"{model}.masks.size") == 2
    ids = page.evaluate(f"{model}.spec.reroll.map(r => r.id)")
    assert len(set(ids)) == 2 and all(ids)
    assert "id" not in page.input_value(SPEC_TA)  # the id never reaches the JSON


def test_model_works_without_a_canvas(page):
    """The model (spec, masks by id, history) is usable on its own: no canvas, no DOM events."""
    res = page.evaluate("""facts => {
        const S = InitEdit.spec.codec(JSON.parse(facts)), changes = [];
        const m = new InitEdit.Model(S, InitEdit.mask, {onChange: t => changes.push(t)});
        const a = S.newRegion({box: [0, 0, 0.5, 0.5]}), b = S.newRegion({box: [0.5, 0.5, 1, 1]});
        m.add('reroll', a); m.commit();
        m._lastCommit = 0; m.add('reroll', b); m.commit();
        m.setOption('keep', 5); m._lastCommit = 0; m.commit();
        m.remove('reroll', 0); m._lastCommit = 0; m.commit();
        const afterRemove = m.text();
        m.undo();
        return {changes: changes.length, afterRemove, undone: m.text(), keep: m.spec.keep, ids: m.spec.reroll.map(r => r.id)};
    }""", json.dumps(spec_facts()))
    assert json.loads(res["afterRemove"])["reroll"] == [{"box": [0.5, 0.5, 1, 1], "seed": -1, "strength": 1, "feather": 0.05}]
    assert len(json.loads(res["undone"])["reroll"]) == 2 and res["keep"] == 1  # clamped to the server's limit
    assert res["changes"] == 5 and len(set(res["ids"])) == 2


def test_accordion_flags_a_bad_field_before_generate(page):
    """The accordion asks the server's parser (the validate route) and shows its message, debounced."""
    page.click(".initedit-tab[data-tab=layout]")
    drv.drag(page, (0.1, 0.1), (0.5, 0.5))  # a box without a phrase: the parser refuses it
    invalid = page.locator(".initedit-invalid")
    invalid.wait_for(state="visible", timeout=3000)
    assert "layout[0].phrase" in invalid.inner_text()
    n = len(page.validations)
    page.click(".initedit-word:text-is('cat')")
    page.wait_for_timeout(600)
    assert not invalid.is_visible()
    assert len(page.validations) == n + 1  # one request per settled change
    json.loads(page.validations[-1])  # the body is JSON: {"spec": text}
    page.wait_for_timeout(800)
    assert len(page.validations) == n + 1  # idle: no more requests


def test_no_facts_no_editor_and_a_message(browser):
    page = browser.new_page()
    try:
        page.goto((HERE / "harness.html").as_uri())
        for js in sorted((ROOT / "javascript").glob("*.js")):
            page.add_script_tag(path=str(js))
        page.evaluate("InitEdit.mountAll()")
        assert "no spec facts" in page.inner_text(".initedit-root")
        assert page.locator("canvas.initedit-canvas").count() == 0
    finally:
        page.close()
