"""The script's callbacks, kept out of ``scripts/initedit.py`` so that file stays a thin shell."""
from __future__ import annotations

from ..spec import ERROR_KEY, INFOTEXT_KEY, SpecError
from . import args as script_args
from . import host
from .session import LOG_PREFIX, Session, infotext_image_index

SESSION_ATTR = "_initedit_session"
_said: set[str] = set()


def say_once(text: str) -> None:
    if text not in _said:
        _said.add(text)
        print(f"{LOG_PREFIX} {text}")


def on_process(p, args) -> None:
    setattr(p, SESSION_ATTR, None)
    try:
        enabled, spec, notes = script_args.spec_from_args(args, p)
    except SpecError as e:  # bad input: no edit, said in console, UI comments and infotext
        message = f"not applied: {e}"
        print(f"{LOG_PREFIX} {message}")
        p.comment(f"{LOG_PREFIX} {message}")
        p.extra_generation_params[ERROR_KEY] = str(e)
        return
    if not enabled or spec.is_empty:
        return
    from modules import processing

    if not isinstance(p, processing.StableDiffusionProcessingTxt2Img):
        say_once("not applied: InitEdit edits txt2img's initial noise; img2img is not supported")
        return
    reason = host.unsupported_reason()
    if reason:
        say_once(f"not applied: {reason}")
        p.comment(f"{LOG_PREFIX} not applied: {reason}")
        return
    session = Session.start(p, spec, host, notes)
    setattr(p, SESSION_ATTR, session)
    p.extra_generation_params[INFOTEXT_KEY] = lambda **kw: session.image_specs[infotext_image_index(len(session.image_specs), **kw)].to_json()


def on_before_sampling(p, x, noise, c) -> None:
    """``process_before_every_sampling`` (A1111 1.10+): edit x (first pass) or noise (hires) in place."""
    session = getattr(p, SESSION_ATTR, None)
    if session is None:
        return
    if getattr(p, "is_hr_pass", False):
        _guarded(session, lambda: session.edit_hires_noise(noise))
        return
    if getattr(p, "firstpass_image", None) is not None:
        return

    def run():
        new, follow = session.edit_first_noise(x, c, getattr(p, "rng", None))
        x.copy_(new)
        if follow is not None:
            p.rng = follow

    _guarded(session, run)


def on_process_batch(p) -> None:
    """A1111 1.6-1.9 (no ``process_before_every_sampling``): edit on the sampler's first draw."""
    session = getattr(p, SESSION_ATTR, None)
    if session is None or getattr(p, "rng", None) is None:
        return
    from ..noise_stream import FirstDrawHook

    base = p.rng

    def edit(x):
        try:
            return session.edit_first_noise(x, p.c, base)
        except Exception as e:  # the generation goes on with the unedited noise
            session.note(f"skipped for this batch: {type(e).__name__}: {e}")
            return x, base

    p.rng = FirstDrawHook(base, edit)


def on_postprocess(p, processed) -> None:
    session = getattr(p, SESSION_ATTR, None)
    if session is None:
        return
    setattr(p, SESSION_ATTR, None)
    session.close()
    if session.spec.heatmaps and session.layouts:
        for index, image in session.heatmap_images((p.width, p.height)):
            processed.images.append(image)
            processed.infotexts.append(f"InitEdit probe heatmaps of image {index}")


def _guarded(session, fn) -> None:
    try:
        fn()
    except Exception as e:  # never break the generation: it goes on with the noise as it was
        session.note(f"skipped for this batch: {type(e).__name__}: {e}")
