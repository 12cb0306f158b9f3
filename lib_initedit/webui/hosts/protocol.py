"""What a WebUI host gives the controller and the session: the one interface every WebUI host class implements
(``A1111Host``, ``ForgeHost``, ``LdmPatchedHost``; a stand-in in the unit tests). Nothing else of a host is
called, and ``tests/test_host_protocol.py`` checks every host class against this Protocol, signatures included.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import torch

Stream = Any  # ``next() -> (B, C, H, W)`` standard normal draws, one generator per image seed


@runtime_checkable
class Host(Protocol):
    name: str  # which host, for messages and the keep cache's key

    # ---- support
    def unsupported_reason(self, feature: str = "layout") -> str | None:
        """Why ``feature`` cannot run on the loaded model, or None. ``"reroll"``: region reroll, keep the rest and
        the per-step noise that follows the reroll, which act on the latent the sampler starts from and on its
        denoised prediction (any model family the host runs); ``"layout"``: the probe, layout guidance and
        heatmaps, which need a UNet's cross-attention. Whatever stops "reroll" stops "layout" too."""

    def say_once(self, message: str) -> None:
        """Tell the user once per process (console)."""

    def patch_once(self, obj: Any, name: str, body: Callable) -> Callable[[], None]:
        """Give ``obj`` (a per-generation object) an instance attribute ``name`` that runs ``body(original, ...)``
        once and is removed as it starts; returns the function that removes it if it never runs."""

    # ---- noise
    def noise_stream(self, p: Any, shape: tuple, seeds: list) -> Stream:
        """The WebUI's own noise for these seeds (same source, variation seed and resize as ``p``)."""

    def follow_brownian_noise(self, p: Any, make: Callable) -> Callable[[], None]:
        """Route this batch's SDE noise sampler through ``make(base_sampler | None, x, sigmas)``; returns
        a function that undoes it (also undone by itself once used)."""

    def brownian_noise(self, x: torch.Tensor, sigmas: torch.Tensor, seeds: list) -> Callable:
        """The SDE samplers' Brownian noise ``f(sigma, sigma_next)`` for these image seeds."""

    def opt(self, name: str, default: Any) -> Any:
        """A setting's value."""

    # ---- sampling
    def hook_sampling(self, p: Any, hooks: Any) -> Callable[[], None]:
        """Run ``hooks`` (a ``SamplingHooks``) around this batch's first-pass sampling and every call of its
        CFG denoiser; returns a function that undoes it if the sampler never ran."""

    def sample_base(self, p: Any, x: torch.Tensor, c: Any, uc: Any, hooks: Any) -> None:
        """Sample this batch's first pass from ``x`` on a sampler of its own with ``hooks`` attached (the
        image without the reroll, for 'Keep the rest'); the real sampler and noise stream are untouched."""

    def base_key(self, p: Any, x_T: torch.Tensor, c: Any, uc: Any, index: int, extra: str) -> str:
        """A key of everything that decides image ``index``'s first pass from ``x_T``."""

    # ---- model and probe
    def unet_module(self) -> torch.nn.Module:
        """The module that holds the ``attn2`` layers (hooks go there)."""

    def probe_call(self, p: Any, x: torch.Tensor, c: Any, rows: list) -> Callable[[torch.Tensor], Any]:
        """``call(noise)`` runs the UNet once at the first timestep with the conditional rows ``rows``."""

    def cond_rows_of(self, c: Any) -> list:
        """Per image of the batch: the cond rows of its AND sub-prompts, in prompt order."""

    def forget_controlnet_batch_caches(self, p: Any) -> None:
        """Make other extensions recompute what they cached from the probe's batch."""

    # ---- text
    def subprompts_at_step0(self, prompt: str, steps: int) -> list:
        """AND sub-prompts, each as its text at step 0."""

    def prompt_chunks(self, prompt: str) -> list:
        """Content token ids of each 75-token chunk (no BOS/EOS/padding)."""

    def encode_phrase(self, phrase: str) -> list:
        """Token ids of a phrase as the prompt's tokenizer writes them."""

    def decode_tokens(self, ids: list) -> str | None:
        """Text of token ids, for messages; None when unknown."""

    # ---- state
    def set_textinfo(self, text: str) -> None:
        """Progress text shown in the UI."""

    def should_stop(self) -> bool:
        """Interrupt or skip was asked for."""
