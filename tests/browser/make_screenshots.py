"""Make the README screenshots (docs/img/) from a running WebUI with InitEdit installed.

    INITEDIT_WEBUI_URL=http://127.0.0.1:7881 python tests/browser/make_screenshots.py [out_dir]

Generates at 256x256 with a fixed seed: a base image, the same seed with one region rerolled (before/after,
box drawn), the accordion in both tabs, and the probe heatmaps of a layout run. PNGs are downscaled and
palette-quantized to stay small.
"""
from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

from PIL import Image, ImageDraw
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import editor_driver as drv  # noqa: E402
from conftest import chromium_path  # noqa: E402

URL = os.environ.get("INITEDIT_WEBUI_URL", "http://127.0.0.1:7881").rstrip("/")
OUT = Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parents[1] / "docs" / "img")
R = ".initedit-root[data-tab=txt2img]"
SEED, REROLL_SEED, BOX = 12345, 777, (0.3, 0.3, 0.7, 0.7)


def save_small(img: Image.Image, name: str, width: int) -> None:
    if img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    img.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(OUT / name, optimize=True)
    print(f"{OUT / name}: {img.width}x{img.height}, {(OUT / name).stat().st_size // 1024} KiB")


def shot(locator) -> Image.Image:
    return Image.open(io.BytesIO(locator.screenshot()))


def generate(page) -> dict:
    page.evaluate("document.querySelector('#generation_info_txt2img textarea').value = ''")
    page.click("#txt2img_generate")
    page.wait_for_function("() => (document.querySelector('#generation_info_txt2img textarea') || {}).value",
                           timeout=300_000)
    page.wait_for_timeout(800)
    return json.loads(page.input_value("#generation_info_txt2img textarea"))


def gallery_images(page) -> list[Image.Image]:
    srcs = page.eval_on_selector_all("#txt2img_gallery .thumbnail-item img, #txt2img_gallery .thumbnails img",
                                     "els => els.map(e => e.src)")
    if not srcs:
        srcs = page.eval_on_selector_all("#txt2img_gallery img", "els => els.map(e => e.src)")
    out = []
    for src in dict.fromkeys(srcs):
        out.append(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))
    return out


def set_number(page, elem_id: str, value) -> None:
    loc = page.locator(f"#{elem_id} input[type=number]").first
    loc.fill(str(value))
    loc.press("Enter")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(URL + "/?__theme=dark", wait_until="domcontentloaded", timeout=180_000)
        page.wait_for_selector(f"{R} canvas.initedit-canvas", state="attached", timeout=180_000)
        page.wait_for_timeout(1500)
        acc_id = page.evaluate(f"document.querySelector('{R}').dataset.accordionId")
        page.fill("#txt2img_prompt textarea", "a cat and a red car on a street")
        for elem, v in (("txt2img_width", 256), ("txt2img_height", 256), ("txt2img_steps", 8)):
            set_number(page, elem, v)
        page.fill("#txt2img_seed input", str(SEED))
        page.press("#txt2img_seed input", "Enter")

        before = gallery_images(page) if generate(page) else []
        acc = page.locator(f"#{acc_id}")
        acc.locator(".label-wrap").first.click()
        page.wait_for_timeout(400)
        page.click(f"{R} .initedit-bg-last")
        drv.drag(page, BOX[:2], BOX[2:], scope=R)
        page.fill(f"{R} .initedit-seed", str(REROLL_SEED))
        page.press(f"{R} .initedit-seed", "Enter")
        page.locator(f"{R} [data-field=feather-num]").fill("0.1")
        page.locator(f"{R} [data-field=feather-num]").press("Enter")
        page.wait_for_timeout(300)
        acc.scroll_into_view_if_needed()
        save_small(shot(acc), "accordion_reroll.png", 480)

        generate(page)
        after = gallery_images(page)
        if before and after:
            a, b = before[0], after[0]
            pair = Image.new("RGB", (a.width * 2 + 8, a.height), "white")
            pair.paste(a, (0, 0))
            pair.paste(b, (a.width + 8, 0))
            d = ImageDraw.Draw(pair)
            x0, y0, x1, y1 = (v * a.width for v in BOX)
            d.rectangle((a.width + 8 + x0, y0, a.width + 8 + x1, y1), outline=(255, 77, 77), width=2)
            save_small(pair, "before_after.png", 520)

        page.click(f"{R} .initedit-tab-body[data-tab=reroll] .initedit-clear")
        page.click(f"{R} .initedit-tab[data-tab=layout]")
        drv.drag(page, (0.05, 0.45), (0.45, 0.95), scope=R)
        page.click(f"{R} .initedit-word:text-is('cat')")
        drv.drag(page, (0.5, 0.1), (0.95, 0.55), scope=R)
        page.click(f"{R} .initedit-word:text-is('red car')")
        page.check(f"{R} [data-field=heatmaps]")
        page.wait_for_timeout(300)
        save_small(shot(acc), "accordion_layout.png", 480)

        info = generate(page)
        imgs = gallery_images(page)
        heat = [im for im, text in zip(imgs, info.get("infotexts", [])) if "probe heatmaps" in text]
        if heat:
            save_small(heat[0], "heatmaps.png", 640)
        else:
            print("no heatmap image in the gallery:", [t[:60] for t in info.get("infotexts", [])])
        save_small(shot(page.locator("#txt2img_gallery")), "gallery_heatmaps.png", 480)
        browser.close()


if __name__ == "__main__":
    main()
