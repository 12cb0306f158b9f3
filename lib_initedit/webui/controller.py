"""The script's callbacks, kept out of ``scripts/initedit.py`` so that file stays a thin shell."""
from __future__ import annotations

from ..reroll import keep
from ..sampling_hooks import SamplingHooks
from ..spec import ERROR_KEY, INFOTEXT_KEY, NOTE_KEY, InitEditSpec, SpecError
from . import args as script_args
from . import hosts, settings
from .console import LOG_PREFIX, say_once
from .per_image import PerImageInfotext, infotext_image_index
from .session import Session, base_extra

host = hosts.select_host()  # the running WebUI's host: an instance of one of the classes in webui/hosts
SESSION_ATTR = "_initedit_session"
_bases = keep.BaseCache(0)  # recent plain first passes, the bases of 'Keep the rest'; sized by the setting


def base_cache() -> keep.BaseCache:
    """The process's base cache, resized to the setting (MB; 0 = off) each time it is asked for."""
    _bases.resize(int(float(host.opt(settings.KEEP_CACHE_OPTION, settings.KEEP_CACHE_DEFAULT_MB)) * 2**20))
    return _bases


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
    reason = host.unsupported_reason("reroll")
    if reason:
        say_once(f"not applied: {reason}")
        p.comment(f"{LOG_PREFIX} not applied: {reason}")
        return
    layout_reason = host.unsupported_reason("layout") if spec.layout else None
    if layout_reason:  # layout needs a UNet's cross-attention: dropped, said; the regions still run
        message = f"layout: not applied: {layout_reason}"
        say_once(message)
        p.comment(f"{LOG_PREFIX} {message}")
        notes, spec = [*notes, message], spec.replace(layout=())
        if spec.is_empty:
            p.extra_generation_params[NOTE_KEY] = message
            return
    session = Session.start(p, spec, host, notes, cache=base_cache())
    setattr(p, SESSION_ATTR, session)
    p.extra_generation_params[INFOTEXT_KEY] = PerImageInfotext(
        session.spec.to_json(),
        lambda **kw: session.image_specs[infotext_image_index(len(session.image_specs), **kw)].to_json())


def on_before_sampling(p, x, noise, c, uc=None) -> None:
    """``process_before_every_sampling`` (A1111 1.10+): edit x (first pass) or noise (hires) in place."""
    session = getattr(p, SESSION_ATTR, None)
    if session is None:
        _record_plain(p, x, c, uc)
        return
    if getattr(p, "is_hr_pass", False):
        _guarded(session, lambda: session.edit_hires_noise(noise))
        return
    if getattr(p, "firstpass_image", None) is not None:
        return

    def run():
        new, follow = session.edit_first_noise(x, c, getattr(p, "rng", None), uc)
        x.copy_(new)
        if follow is not None:
            p.rng = follow

    _guarded(session, run)


def on_process_batch(p) -> None:
    """A1111 1.6-1.9 (no ``process_before_every_sampling``): edit on the sampler's first draw."""
    session = getattr(p, SESSION_ATTR, None)
    if getattr(p, "rng", None) is None:
        return
    from ..reroll.noise_stream import FirstDrawHook

    base = p.rng
    if session is None:  # a plain first pass: remember it for 'Keep the rest', as on_before_sampling does on 1.10
        def record(x):
            _record_plain(p, x, getattr(p, "c", None), getattr(p, "uc", None))
            return x, base

        if base_cache().max_bytes > 0:
            p.rng = FirstDrawHook(base, record)
        return

    def edit(x):
        try:
            return session.edit_first_noise(x, p.c, base, getattr(p, "uc", None))
        except Exception as e:  # the generation goes on with the unedited noise
            session.note(f"skipped for this batch: {type(e).__name__}: {e}")
            return x, base

    p.rng = FirstDrawHook(base, edit)


def on_before_hr(p) -> None:
    """A1111 1.6-1.9, hires pass: its noise is drawn before ``before_hr`` and handed to the hires sampler's
    ``sample_img2img``; a one-shot patch of that sampler edits it there, in place."""
    session = getattr(p, SESSION_ATTR, None)
    sampler = getattr(p, "sampler", None)
    if session is None or not hasattr(sampler, "sample_img2img"):
        return

    def sample_img2img(original, p_, x, noise, *args, **kwargs):
        _guarded(session, lambda: session.edit_hires_noise(noise))
        return original(p_, x, noise, *args, **kwargs)

    session.restorers.append(host.patch_once(sampler, "sample_img2img", sample_img2img))


def _record_plain(p, x, c, uc) -> None:
    """A txt2img first pass without InitEdit: remember it as the base of a later 'Keep the rest' reroll."""
    from modules import processing

    if (x is None or uc is None or getattr(p, "is_hr_pass", False) or getattr(p, "firstpass_image", None) is not None
            or not isinstance(p, processing.StableDiffusionProcessingTxt2Img) or host.unsupported_reason("reroll")):
        return
    cache = base_cache()
    if cache.max_bytes <= 0:
        return
    try:
        extra = base_extra(InitEditSpec())
        keys = [host.base_key(p, x[i], c, uc, i, extra) for i in range(x.shape[0])]
        recorder = cache.recorder(keys)
        host.hook_sampling(p, SamplingHooks([recorder]))
    except Exception as e:  # remembering is a convenience: never in the way of a generation
        say_once(f"could not remember this generation for 'Keep the rest': {type(e).__name__}: {e}")


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
