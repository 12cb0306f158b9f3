"""See InitEdit work without a WebUI, on the bundled toy model (CPU, a few seconds):

    python -m lib_initedit.demo --out demo.png

Row 1: a seed's image, then three rerolls of one region (box drawn; the rest stays).
Rows 2-3: layout "a red circle and a blue square" with target boxes: the plain image and the probe's
attention heatmaps on x_T, then the image from the edited noise and the heatmaps measured on it.
By default the probe averages both 8x8 down-path layers ("level"), which places objects far better on
this model than the paper's single layer (see docs/toy-world.md); ``--layers paper`` shows the latter.
"""
from __future__ import annotations

import argparse
import time

import torch


def _to_pil(img: torch.Tensor, scale: int):
    from PIL import Image

    arr = ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    im = Image.fromarray(arr)
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST)


def _heat_pil(m: torch.Tensor, size: int, rgb):
    from PIL import Image

    m = m.float()
    m = (m - m.min()) / (m.max() - m.min()).clamp(min=1e-8)
    col = torch.tensor(rgb, dtype=torch.float32)[:, None, None]
    img = (m[None] * col * 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(img).resize((size, size), Image.NEAREST)


def _draw_box(im, box, colour, width=2):
    from PIL import ImageDraw

    x0, y0, x1, y1 = (v * im.width for v in box)
    ImageDraw.Draw(im).rectangle([x0, y0, x1 - 1, y1 - 1], outline=colour, width=width)
    return im


def build(out: str, seed: int = 3, layout_seed: int = 12, steps: int = 20, scale: int = 5, layers: str = "level") -> None:
    from PIL import Image, ImageDraw

    from .noise import reroll_batch
    from .probe import run_layout
    from .spec import RerollRegion
    from .toy.data import RGB
    from .toy.detect import detect_all
    from .toy.pipe import SeedStream, ToyPipe, seed_noise

    pipe = ToyPipe(steps=steps)

    # Row 1: region reroll around the first object of the seed's image.
    cap1 = "a yellow triangle and a green circle"
    base = seed_noise(seed)
    img0 = pipe.generate(base[None], [cap1])[0]
    det = detect_all(img0, ["yellow", "green"])
    d = det["yellow"] or det["green"]
    if d is not None:
        x0, y0, x1, y1 = d.box
        pad = 2
        box = (max(0, x0 - pad) / 32, max(0, y0 - pad) / 32, min(32, x1 + pad) / 32, min(32, y1 + pad) / 32)
    else:
        box = (0.1, 0.1, 0.5, 0.5)
    rerolled, _ = reroll_batch(base.expand(3, *base.shape), [[RerollRegion(box=box, seed=1000 + r)] for r in range(3)],
                               lambda seeds: SeedStream(base.shape, seeds))

    # Rows 2-3: layout.
    cap2 = "a red circle and a blue square"
    phrases = ["red circle", "blue square"]
    boxes = [(0.05, 0.05, 0.45, 0.45), (0.55, 0.55, 0.95, 0.95)]
    x_T = seed_noise(layout_seed)[None]
    pos = [pipe.phrase_positions(cap2, phrases)]
    res = run_layout(pipe.unet, pipe.probe_call([cap2]), x_T, pos, [boxes], rounds=1, method="swap", layers=layers)

    imgs = pipe.generate(torch.cat([rerolled, x_T, res.noise]), [cap1] * 3 + [cap2] * 2)
    S = 32 * scale
    panels = [[_to_pil(img0, scale)] + [_draw_box(_to_pil(i, scale), box, (255, 0, 255)) for i in imgs[:3]]]
    for img, maps in ((imgs[3], res.maps_before[0]), (imgs[4], res.maps_after[0])):
        row = [_to_pil(img, scale)]
        for b, c in zip(boxes, ((255, 80, 80), (80, 140, 255))):
            _draw_box(row[0], b, c)
        for k, (ph, b) in enumerate(zip(phrases, boxes)):
            row.append(_draw_box(_heat_pil(maps[k], S, RGB[ph.split()[0]]), b, (255, 255, 255), 1))
        row.append(Image.new("RGB", (S, S), (30, 30, 30)))
        panels.append(row)
    labels = ["seed image", "region reroll 1", "region reroll 2", "region reroll 3",
              "layout: no edit", "probe on x_T: red circle", "probe on x_T: blue square", "",
              f"layout: InitEdit ({layers})", "probe after: red circle", "probe after: blue square", ""]
    notes = [None, None, f"{cap2}\nboxes: red circle top-left,\nblue square bottom-right\n"
             f"seed {layout_seed}, swap, 1 round,\nprobe layers:\n" + "\n".join(n.split('.transformer')[0] for n in res.layers)]
    pad, top = 6, 16
    sheet = Image.new("RGB", (4 * (S + pad) + pad, 3 * (S + top + pad) + pad + 18), (15, 15, 15))
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 4), f"InitEdit on the toy model - row 1: '{cap1}', seed {seed}", fill=(230, 230, 230))
    for r, row in enumerate(panels):
        for c, im in enumerate(row):
            x, y = pad + c * (S + pad), 18 + pad + r * (S + top + pad)
            draw.text((x, y), labels[4 * r + c], fill=(220, 220, 220))
            sheet.paste(im, (x, y + top))
        if notes[r]:
            draw.multiline_text((pad + 3 * (S + pad) + 4, 18 + pad + r * (S + top + pad) + top + 4), notes[r],
                                fill=(200, 200, 200))
    sheet.save(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="demo.png")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--layout-seed", type=int, default=12)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--layers", choices=("paper", "level"), default="level",
                    help="probe layers: the paper's single 8x8 layer, or both 8x8 down layers (better on the toy model)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    build(a.out, a.seed, a.layout_seed, a.steps, layers=a.layers)
    print(f"wrote {a.out} in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
