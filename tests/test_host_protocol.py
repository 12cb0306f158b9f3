"""Every WebUI host class (and the sessions' stand-in) implements ``hosts.protocol.Host`` completely, with the
Protocol's signatures; the patcher family derives from the pure ``PatcherHost``. The hosts are imported against
bare stand-ins of the WebUI's packages (nothing of them runs here)."""
from __future__ import annotations

import importlib
import inspect
import sys
import types

import pytest

from lib_initedit.patcher import PatcherHost
from lib_initedit.webui.hosts import HOST_CLASSES
from lib_initedit.webui.hosts.protocol import Host


def protocol_members():
    methods = {name: [p for p in inspect.signature(fn).parameters if p != "self"]
               for name, fn in vars(Host).items() if inspect.isfunction(fn) and not name.startswith("_")}
    return methods, set(getattr(Host, "__annotations__", {}))


@pytest.fixture()
def host_classes(monkeypatch):
    stubs = {name: types.ModuleType(name) for name in
             ("modules", "modules.shared", "modules.rng", "modules.prompt_parser", "modules.devices")}
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
        if "." in name:
            setattr(stubs["modules"], name.split(".")[1], module)
    ours = [name for name in sys.modules if name.startswith("lib_initedit.webui.hosts.")]
    for name in ours:  # imported afresh against the stand-ins, put back afterwards
        monkeypatch.delitem(sys.modules, name)
    classes = {cls: getattr(importlib.import_module(f"lib_initedit.webui.hosts.{module}"), cls)
               for module, cls in HOST_CLASSES.values()}
    yield classes
    for name in [name for name in sys.modules if name.startswith("lib_initedit.webui.hosts.")]:
        sys.modules.pop(name, None)


def test_the_protocol_covers_what_the_controller_and_the_session_call():
    methods, attributes = protocol_members()
    called = {"unsupported_reason", "patch_once", "opt", "base_key", "hook_sampling", "say_once",  # controller
              "noise_stream", "follow_brownian_noise", "brownian_noise", "sample_base", "unet_module",  # session
              "probe_call", "cond_rows_of", "forget_controlnet_batch_caches", "subprompts_at_step0",
              "prompt_chunks", "encode_phrase", "decode_tokens", "set_textinfo", "should_stop"}
    assert called <= set(methods), called - set(methods)
    assert "name" in attributes


def test_every_host_class_has_the_protocols_members_with_its_signatures(host_classes):
    methods, attributes = protocol_members()
    for cls in host_classes.values():
        host = cls()
        assert isinstance(host, Host), cls.__name__
        for attribute in attributes:
            assert isinstance(getattr(host, attribute), str), (cls.__name__, attribute)
        for name, params in methods.items():
            got = [p for p in inspect.signature(getattr(host, name)).parameters]
            assert got == params, f"{cls.__name__}.{name}{tuple(got)} != Host.{name}{tuple(params)}"


def test_the_sessions_stand_in_follows_the_protocol_too():
    from tests.webui_fakes import FakeHost

    methods, _ = protocol_members()
    assert isinstance(FakeHost(), Host)
    for name, params in methods.items():
        assert list(inspect.signature(getattr(FakeHost(), name)).parameters) == params, name


def test_the_patcher_family_shares_one_base_and_overrides_only_what_differs(host_classes):
    forge, ldm, a1111 = host_classes["ForgeHost"], host_classes["LdmPatchedHost"], host_classes["A1111Host"]
    family = forge.__mro__[1]
    assert family is ldm.__mro__[1] and issubclass(family, PatcherHost) and issubclass(family, a1111)
    assert not issubclass(a1111, PatcherHost)
    for cls in (forge, ldm):  # each line defines only its differences; the rest is inherited
        own = {name for name, value in vars(cls).items() if callable(value) and not name.startswith("__")}
        assert own <= {"unsupported_reason", "_model_reason", "_timestep_sampler_sigma", "_compile_conditions",
                       "_calc_cond", "_sampling_prepare_cleanup", "forget_controlnet_batch_caches", "text_model",
                       "_tokenizer", "brownian_noise"}, own
    assert len({host.name for host in (forge(), ldm(), a1111())}) == 3


def test_a1111_hooks_place_every_call_of_a_second_order_sampler_and_leave_the_sampler_as_it_was(host_classes):
    """A1111Host.hook_sampling on an A1111-shaped sampler running Heun: the sampler still sees its function's
    signature (A1111 passes ``sigmas`` only when the function asks for them), every denoiser call reaches the
    hooks as a ``Call`` placed on the schedule (Heun's second call at the next level), and the sampler's
    ``sample`` and ``func`` are its own again afterwards."""
    import torch

    a1111 = sys.modules["lib_initedit.webui.hosts.a1111"]
    a1111.shared.state = types.SimpleNamespace(interrupted=False, skipped=False, stopping_generation=False)
    sigmas = torch.tensor([10.0, 5.0, 2.0, 0.0])

    def sample_heun(model, x, sigmas, extra_args=None, callback=None, disable=None):
        for i in range(len(sigmas) - 1):
            d = model(x, sigmas[i], cond=None)
            if sigmas[i + 1] > 0:
                model(x, sigmas[i + 1], cond=None)
            x = x + (x - d) * 0.1
        return x

    class Denoiser(torch.nn.Module):
        steps, total_steps = 3, 6

        def forward(self, x, sigma, cond=None):
            return x * 0.5

    class Sampler:
        def __init__(self):
            self.model_wrap_cfg = Denoiser()
            self.func = sample_heun

        def sample(self, p):
            kwargs = {"sigmas": sigmas} if "sigmas" in inspect.signature(self.func).parameters else {}
            return self.func(self.model_wrap_cfg, torch.ones(1, 4, 2, 2), **kwargs)

    class Hooks:
        def __init__(self):
            self.calls, self.log = [], []

        def enter(self):
            self.log.append("enter")

        def before_call(self, call, cond_rows):
            self.calls.append(call)

        def after_call(self, call, denoised):
            return None

        def leave(self, completed):
            self.log.append(("leave", completed))

    sampler, hooks = Sampler(), Hooks()
    p = types.SimpleNamespace(sampler=sampler)
    host = object.__new__(host_classes["A1111Host"])
    host.hook_sampling(p, hooks)
    sampler.sample(p)
    assert [c.at for c in hooks.calls] == [0.0, 1.0, 1.0, 2.0, 2.0]
    assert [c.index for c in hooks.calls] == [0, 1, 2, 3, 4] and {(c.total, c.steps) for c in hooks.calls} == {(6, 3)}
    assert hooks.log == ["enter", ("leave", True)]
    assert "sample" not in vars(sampler) and vars(sampler)["func"] is sample_heun
