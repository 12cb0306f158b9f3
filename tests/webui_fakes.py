"""A small stand-in for the WebUI (no ``modules.*``): a host with a tiny ldm-style UNet, a word tokenizer, the
WebUI's seed-stream noise, a sampler and SDE noise, and a processing object; shared by the session's unit tests
and the Host protocol test."""
import types

import torch

from lib_initedit.toy.pipe import SeedStream as SeedRNG  # like the WebUI's ImageRNG
from lib_initedit.sampling_hooks import Call
from tests.ldm_like import tiny_unet


VOCAB = {}


def encode(text):
    return [VOCAB.setdefault(w, len(VOCAB) + 10) for w in text.lower().split()]


class FakeBrownian:
    """Stands in for k-diffusion's BrownianTreeNoiseSampler: a unit-variance draw per (seed, sigma, sigma_next)."""

    def __init__(self, shape, seeds):
        self.shape, self.seeds = tuple(shape), list(seeds)

    def __call__(self, sigma, sigma_next):
        return torch.stack([torch.randn(self.shape, generator=torch.Generator().manual_seed(
            s * 1000 + int(sigma * 10) + int(sigma_next))) for s in self.seeds])


class FakeSampler:
    def create_noise_sampler(self, x, sigmas, p):
        return FakeBrownian(x.shape[1:], p.all_seeds)


def run_sampling(hooks, x, calls=3):
    """Drive SamplingHooks as a host's sampler does; returns the predictions the sampler stepped with."""
    out = []
    hooks.enter()
    try:
        for i in range(calls):
            hooks.before_call(Call.plain(i, calls), None)
            denoised = x * (i + 1)
            changed = hooks.after_call(Call.plain(i, calls), denoised)
            out.append(denoised if changed is None else changed)
    finally:
        hooks.leave(True)
    return out


class FakeHost:
    name = "fake"

    def __init__(self):
        self.bases_sampled = 0
        self.unet = tiny_unet()
        self.options = {}
        self.textinfo = None
        self.said = []

    def unsupported_reason(self, feature="layout"):
        return None

    def say_once(self, message):
        self.said.append(message)

    def patch_once(self, obj, name, body):
        from lib_initedit.webui.hosts.a1111 import patch_once

        return patch_once(obj, name, body)

    def follow_brownian_noise(self, p, make):
        sampler = getattr(p, "sampler", None)
        if sampler is None:
            return lambda: None
        original = sampler.create_noise_sampler

        def create(x, sigmas, p_):
            restore()
            base = original(x, sigmas, p_)
            return make(base, x, sigmas) or base

        def restore():
            vars(sampler).pop("create_noise_sampler", None)

        sampler.create_noise_sampler = create
        return restore

    def brownian_noise(self, x, sigmas, seeds):
        return FakeBrownian(x.shape[1:], seeds)

    def hook_sampling(self, p, hooks):
        p.hooks = hooks
        return lambda: None

    def sample_base(self, p, x, c, uc, hooks):
        """A stand-in sampler: three calls whose prediction is x scaled by the call index."""
        self.bases_sampled += 1
        run_sampling(hooks, x)

    def base_key(self, p, x_T, c, uc, index, extra):
        return (x_T.numpy().tobytes(), extra)

    def noise_stream(self, p, shape, seeds):
        return SeedRNG(shape, seeds)

    def opt(self, name, default):
        return self.options.get(name, default)

    def cond_rows_of(self, c):
        return [[i] for i in range(c.shape[0])]

    def subprompts_at_step0(self, prompt, steps):
        return [s.strip() for s in prompt.split(" AND ")]

    def prompt_chunks(self, prompt):
        return [encode(prompt)]

    def encode_phrase(self, phrase):
        return encode(phrase)

    def decode_tokens(self, ids):
        return None

    def set_textinfo(self, text):
        self.textinfo = text

    def unet_module(self):
        return self.unet

    def should_stop(self):
        return False

    def forget_controlnet_batch_caches(self, p):
        self.caches_forgotten = getattr(self, "caches_forgotten", 0) + 1

    def probe_call(self, p, x, c, rows):
        ctx = c[rows]
        return lambda noise: self.unet(noise, torch.full((noise.shape[0],), 999), context=ctx)


def make_p(batch=2, n_iter=1, seed=10, prompt="a cat and a red car"):
    p = types.SimpleNamespace(all_seeds=[seed + i for i in range(batch * n_iter)], batch_size=batch, iteration=0,
                              prompts=[prompt] * batch, steps=20, extra_generation_params={}, comments={})
    p.comment = lambda text: p.comments.__setitem__(text, 1)
    p.rng = SeedRNG((4, 32, 32), p.all_seeds[:batch])
    return p
