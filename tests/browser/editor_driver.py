"""Small helpers to drive the InitEdit canvas with a real mouse, in image fractions."""
from __future__ import annotations

import json


def canvas(page, scope="body"):
    return page.locator(f"{scope} canvas.initedit-canvas").first


def to_px(page, frac, scope="body"):
    box = canvas(page, scope).bounding_box()
    return box["x"] + frac[0] * box["width"], box["y"] + frac[1] * box["height"]


def drag(page, a, b, scope="body", steps=8, button="left"):
    """Press at fraction a, move to fraction b, release."""
    x0, y0 = to_px(page, a, scope)
    x1, y1 = to_px(page, b, scope)
    page.mouse.move(x0, y0)
    page.mouse.down(button=button)
    page.mouse.move(x1, y1, steps=steps)
    page.mouse.up(button=button)
    page.wait_for_timeout(50)


def spec(page, spec_sel="#script_txt2img_initedit_spec textarea"):
    text = page.locator(spec_sel).first.evaluate("el => el.value")
    return json.loads(text or "{}")


def close(a, b, tol=0.02):
    return all(abs(x - y) <= tol for x, y in zip(a, b))
