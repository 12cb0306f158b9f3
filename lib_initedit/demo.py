"""See InitEdit work without a WebUI, on the bundled toy model (CPU, a few seconds):

    python -m lib_initedit.demo --out demo.png

Rows 1-3: a seed's image, then three rerolls of one region (box drawn) at keep 0 (the reroll alone: the
rest changes a little), keep 1 without a band (the outside follows the seed's image to the end: a hard edge)
and the default keep (keep 1 with a band around the box released gradually; ``lib_initedit.reroll.keep``);
the last column shows where the three rerolls changed the image.
Last two rows: layout "a red circle and a blue square" with target boxes: the plain image and the probe's
attention heatmaps on x_T, then the image with the default layout (noise edit + guided first steps,
``InitEditSpec()``), the heatmaps measured on the edited noise and the model's own attention at the first
step after the guided ones (``LayoutGuidance.watch``, the heatmaps' third column in the WebUI).
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


def _change_pil(imgs: torch.Tensor, ref: torch.Tensor, size: int):
    """Mean |delta| of ``imgs`` vs ``ref`` as a gray map (0 = black, 0.5 or more of the 0..1 range = white)."""
    from PIL import Image

    d = ((imgs - ref[None]).abs().mean(dim=(0, 1)) / 2 / 0.5).clamp(0, 1)
    arr = (d * 255).round().byte().numpy()
    return Image.fromarray(arr, "L").convert("RGB").resize((size, size), Image.NEAREST)


def build(out: str, seed: int = 3, layout_seed: int = 12, steps: int = 20, scale: int = 5, layers: str = "level") -> None:
    from PIL import Image, ImageDraw

    from .layout.guidance import LayoutGuidance
    from .sampling_hooks import SamplingHooks
    from .reroll.keep import KeepBlend, Recorder
    from .reroll.noise import reroll_batch
    from .layout.probe import layout_options, probe_layers, run_layout
    from .spec import InitEditSpec, RerollRegion
    from .toy.data import RGB
    from .toy.detect import detect_all
    from .toy.pipe import SeedStream, ToyPipe, seed_noise

    pipe = ToyPipe(steps=steps)

    # Rows 1-3: region reroll around the first object of the seed's image, at keep 0, the default keep and 1.
    cap1 = "a yellow triangle and a green circle"
    base = seed_noise(seed)
    rec = Recorder()
    img0 = pipe.generate(base[None], [cap1], hooks=SamplingHooks([rec]))[0]  # the base, recorded as a host records it
    det = detect_all(img0, ["yellow", "green"])
    d = det["yellow"] or det["green"]
    if d is not None:
        x0, y0, x1, y1 = d.box
        pad = 2
        box = (max(0, x0 - pad) / 32, max(0, y0 - pad) / 32, min(32, x1 + pad) / 32, min(32, y1 + pad) / 32)
    else:
        box = (0.1, 0.1, 0.5, 0.5)
    regions = [[RerollRegion(box=box, seed=1000 + r)] for r in range(3)]
    rerolled, _ = reroll_batch(base.expand(3, *base.shape), regions, lambda seeds: SeedStream(base.shape, seeds))
    default_keep = (InitEditSpec().keep, InitEditSpec().keep_band)
    keeps = sorted({(0.0, 0.0), default_keep, (1.0, 0.0)})  # (keep, band)
    reroll_rows = {}
    for keep, band in keeps:  # one record serves the three variants (vary "reroll": same base seed)
        blend = KeepBlend.from_spec(rec.records * 3, regions, (32, 32), InitEditSpec(keep=keep, keep_band=band))
        reroll_rows[keep, band] = pipe.generate(rerolled, [cap1] * 3, hooks=SamplingHooks([blend]))

    # Layout rows.
    cap2 = "a red circle and a blue square"
    phrases = ["red circle", "blue square"]
    boxes = [(0.05, 0.05, 0.45, 0.45), (0.55, 0.55, 0.95, 0.95)]
    x_T = seed_noise(layout_seed)[None]
    pos = [pipe.phrase_positions(cap2, phrases)]
    spec = InitEditSpec().replace(layers=layers)
    res = run_layout(pipe.unet, pipe.probe_call([cap2]), x_T, pos, [boxes], **layout_options(spec))
    guide = LayoutGuidance.from_spec(pipe.unet, spec, pos, [boxes]).watch(probe_layers(pipe.unet, spec.layers))
    edited = pipe.generate(res.noise, [cap2], hooks=SamplingHooks([guide]))
    imgs = torch.cat([pipe.generate(x_T, [cap2]), edited])
    watched = guide.watched_maps(0)

    S = 32 * scale
    panels, labels, notes = [], [], []
    for r, keep in enumerate(keeps):
        first = _to_pil(img0, scale) if r == 0 else None
        row = [first] + [_draw_box(_to_pil(i, scale), box, (255, 0, 255)) for i in reroll_rows[keep]]
        row.append(_draw_box(_change_pil(reroll_rows[keep], img0, S), box, (255, 0, 255), 1))
        panels.append(row)
        tag = f"keep {keep[0]:g}" + (f" band {keep[1]:g}" if keep[1] else "")
        tag += " (default)" if keep == default_keep else ""
        labels.append(["seed image" if r == 0 else "", f"reroll 1, {tag}", f"reroll 2, {tag}", f"reroll 3, {tag}",
                       "|change| vs seed image"])
        notes.append(None)
    notes[1 if len(keeps) > 1 else 0] = ("keep k: for the first k of\nthe steps, the outside of\nthe box "
                                         "follows the seed\nimage (its recorded\ndenoised prediction);\n"
                                         "a band around the box\nis released gradually")
    steps_note = f"step {guide.watched_index + 1}" if guide.watched_index is not None else "after guidance"
    for img, map_sets, title in ((imgs[0], [(res.maps_before[0], "probe on x_T")], "layout: no edit"),
                                 (imgs[1], [(res.maps_after[0], "edited x_T")] +
                                  ([(watched, steps_note)] if watched is not None else []), "layout: InitEdit")):
        row = [_to_pil(img, scale)]
        for b, c in zip(boxes, ((255, 80, 80), (80, 140, 255))):
            _draw_box(row[0], b, c)
        label = [title]
        for maps, when in map_sets:
            for k, (ph, b) in enumerate(zip(phrases, boxes)):
                row.append(_draw_box(_heat_pil(maps[k], S, RGB[ph.split()[0]]), b, (255, 255, 255), 1))
                label.append(f"{when}: {ph}")
        panels.append(row)
        labels.append(label + [""] * (5 - len(label)))
        notes.append(None)
    notes[-2] = (f"{cap2}\nboxes: red circle top-left,\nblue square bottom-right\n"
                 f"seed {layout_seed}; default: noise edit\n(swap, 1 round) + guidance\n{spec.guidance:g} for "
                 f"{spec.guidance_steps:.0%} of the steps;\nprobe layers:\n" +
                 "\n".join(n.split('.transformer')[0] for n in res.layers))
    cols, pad, top = 5, 6, 16
    rows = len(panels)
    sheet = Image.new("RGB", (cols * (S + pad) + pad, rows * (S + top + pad) + pad + 18), (15, 15, 15))
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 4), f"InitEdit on the toy model - rows 1-{len(keeps)}: '{cap1}', seed {seed}, "
                        f"the boxed region rerolled with seeds 1000-1002", fill=(230, 230, 230))
    for r, row in enumerate(panels):
        y = 18 + pad + r * (S + top + pad)
        for c, im in enumerate(row):
            x = pad + c * (S + pad)
            draw.text((x, y), labels[r][c], fill=(220, 220, 220))
            if im is not None:
                sheet.paste(im, (x, y + top))
        if notes[r]:
            c = 0 if r < len(keeps) else 3
            draw.multiline_text((pad + c * (S + pad) + 4, y + top + 4), notes[r], fill=(200, 200, 200))
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
