#!/usr/bin/env python3
"""API smoke check of the real sd-webui-controlnet in a running lab WebUI (test tooling).

    python tests/tooling/cn_api_smoke.py [--url http://127.0.0.1:7871]

Checks: CN's API answers; the tiny ControlNet (make_tiny_controlnet.py) is listed; txt2img with one
unit (module "none" and "canny", a PIL-drawn control image) works, is pixel-deterministic, and differs
from the same request without ControlNet.  Only the standard library and Pillow are needed.
"""
import argparse
import base64
import hashlib
import io
import json
import sys
import time
import urllib.request


def control_image(size=64):
    """A white square and a grey disc on black: strong, simple edges for canny."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size), "black")
    d = ImageDraw.Draw(im)
    d.rectangle([size // 8, size // 8, size // 2, size // 2], fill="white")
    d.ellipse([size // 2, size // 2, size - size // 8, size - size // 8], fill=(160, 160, 160))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def api(url, path, payload=None, timeout=300):
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def cn_model_name(url, stem="control_tiny_sd15"):
    models = api(url, "/controlnet/model_list")["model_list"]
    hits = [m for m in models if m.split(" [")[0] == stem]
    return hits[0] if hits else None


def cn_unit(model, image_b64, module="none", **kw):
    unit = {"enabled": True, "module": module, "model": model, "image": image_b64, "weight": 1.0,
            "resize_mode": "Crop and Resize", "processor_res": 64, "guidance_start": 0.0, "guidance_end": 1.0,
            "control_mode": "Balanced", "pixel_perfect": False}
    if module == "canny":
        unit.update(threshold_a=100, threshold_b=200)
    unit.update(kw)
    return unit


def txt2img_payload(seed=1234, size=64, steps=4, batch_size=1, units=None, extra_scripts=None, **kw):
    p = {"prompt": "a cat and a red car", "negative_prompt": "", "seed": seed, "steps": steps,
         "width": size, "height": size, "cfg_scale": 7, "sampler_name": "Euler", "batch_size": batch_size,
         "n_iter": 1, "send_images": True, "save_images": False, "alwayson_scripts": {}}
    if units is not None:
        p["alwayson_scripts"]["controlnet"] = {"args": units}
    if extra_scripts:
        p["alwayson_scripts"].update(extra_scripts)
    p.update(kw)
    return p


def image_digests(resp, n=None):
    """sha256 of the decoded RGB pixels of each returned image (CN may append its detected maps)."""
    from PIL import Image

    out = []
    for b in resp["images"][:n]:
        im = Image.open(io.BytesIO(base64.b64decode(b.split(",", 1)[-1]))).convert("RGB")
        out.append(hashlib.sha256(im.tobytes()).hexdigest()[:16])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:7871")
    ap.add_argument("--size", type=int, default=64)
    a = ap.parse_args()
    url = a.url.rstrip("/")
    print("controlnet version:", api(url, "/controlnet/version"))
    model = cn_model_name(url)
    print("model:", model)
    if not model:
        sys.exit("tiny ControlNet not listed: run tests/tooling/make_tiny_controlnet.py")
    img = control_image(a.size)
    results = {}
    for name, units in [("plain", None), ("cn-none", [cn_unit(model, img, "none")]),
                        ("cn-none again", [cn_unit(model, img, "none")]),
                        ("cn-canny", [cn_unit(model, img, "canny")]),
                        ("cn-canny again", [cn_unit(model, img, "canny")]),
                        ("plain again", None)]:
        t = time.time()
        r = api(url, "/sdapi/v1/txt2img", txt2img_payload(size=a.size, units=units))
        results[name] = image_digests(r, 1)[0]
        print(f"{name:15s} {results[name]}  images={len(r['images'])}  {time.time() - t:.1f}s")
    ok = (results["plain"] == results["plain again"]
          and results["cn-none"] == results["cn-none again"]
          and results["cn-canny"] == results["cn-canny again"]
          and len({results["plain"], results["cn-none"], results["cn-canny"]}) == 3)
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
