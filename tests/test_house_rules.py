"""Rules of the house that a reviewer would otherwise have to remember."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_only_webui_package_imports_the_webui():
    offenders = []
    for path in (ROOT / "lib_initedit").rglob("*.py"):
        if "webui" in path.relative_to(ROOT / "lib_initedit").parts:
            continue
        offenders += [f"{path.relative_to(ROOT)}: {m}" for m in imported_modules(path)
                      if m == "modules" or m.startswith("modules.") or m.split(".")[0] in ("ldm", "sgm", "gradio")]
    assert not offenders, offenders


def test_only_comfy_package_imports_comfyui():
    offenders = []
    for path in [*(ROOT / "lib_initedit").rglob("*.py"), *(ROOT / "scripts").glob("*.py"), ROOT / "__init__.py"]:
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("lib_initedit", "comfy") or rel.parts == ("__init__.py",):
            continue
        offenders += [f"{rel}: {m}" for m in imported_modules(path) if m.split(".")[0] in ("comfy", "comfy_extras")]
    assert not offenders, offenders
    # ComfyUI's entry (the root __init__.py) imports nothing of the WebUI
    webui = [m for m in imported_modules(ROOT / "__init__.py") if m.split(".")[0] in ("modules", "backend", "ldm_patched")]
    assert not webui, webui


def test_runtime_needs_nothing_the_webui_lacks():
    allowed = {"torch", "numpy", "einops", "PIL", "gradio", "modules", "safetensors", "lib_initedit", "ldm", "sgm",
               "fastapi", "starlette"}  # the WebUI's own web framework (the API refusal, lib_initedit/webui/api.py)
    allowed |= {"comfy"}  # ComfyUI's own package, imported only by lib_initedit/comfy (test below)
    stdlib = {"__future__", "ast", "base64", "binascii", "contextlib", "dataclasses", "html", "io", "json", "math",
              "random", "re", "typing", "os", "sys", "pathlib", "time", "argparse", "itertools", "functools",
              "collections", "hashlib", "struct", "zlib", "copy", "enum", "textwrap", "string", "warnings", "types",
              "statistics", "subprocess", "tempfile", "shutil", "glob", "logging", "platform", "datetime", "heapq",
              "operator", "threading", "traceback", "inspect", "importlib", "gc", "tracemalloc", "resource", "hmac"}
    paths = [p for p in (ROOT / "lib_initedit").rglob("*.py") if "toy" not in p.parts and p.name != "demo.py"]
    paths += list((ROOT / "scripts").glob("*.py"))
    bad = [f"{p.relative_to(ROOT)}: {m}" for p in paths for m in imported_modules(p)
           if m.split(".")[0] not in allowed | stdlib]
    assert not bad, bad


# Files that may wrap an instance's ``forward``: each wraps the instance's current forward and restores exactly what it
# found, on error and interrupt too; everything else hooks through register_forward_*_hook.
FORWARD_ALLOWED = {"lib_initedit/layout/guidance.py"}


def forward_assignments(source: str) -> list[str]:
    """Every place that sets or deletes a ``forward`` attribute: ``x.forward = / += / del``, ``setattr(x, "forward",
    ...)``, ``delattr(x, "forward")``, ``x.__dict__["forward"] = ...`` and ``vars(x)["forward"] = ...``."""
    found = []
    tree = ast.parse(source)

    def is_forward_target(t) -> bool:
        if isinstance(t, ast.Attribute):
            return t.attr == "forward"
        if isinstance(t, ast.Subscript):  # x.__dict__["forward"], vars(x)["forward"]
            key = t.slice.value if isinstance(t.slice, ast.Index) else t.slice  # noqa: ast.Index on 3.8
            return isinstance(key, ast.Constant) and key.value == "forward"
        if isinstance(t, (ast.Tuple, ast.List)):
            return any(is_forward_target(e) for e in t.elts)
        return False

    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            if len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value == "forward":
                found.append(f"line {node.lineno}: {node.func.id}(..., 'forward')")
        found += [f"line {node.lineno}: {ast.unparse(t)}" for t in targets if is_forward_target(t)]
    return found


def test_the_forward_rule_catches_every_spelling():
    for bad in ("m.forward = f", "self.unet.forward = f", "m.forward += 1", "del m.forward", "setattr(m, 'forward', f)",
                "delattr(m, 'forward')", "m.__dict__['forward'] = f", "vars(m)['forward'] = f", "a, m.forward = 1, f"):
        assert forward_assignments(bad), bad
    for fine in ("y = m.forward(x)", "m.register_forward_pre_hook(h)", "f = vars(m).get('forward')",
                 "setattr(m, 'scale', 1)", "forward = 3", "old = m.forward"):
        assert not forward_assignments(fine), fine


def test_no_forward_is_replaced_outside_the_allowed_files():
    """Hooks are per instance through register_forward_*_hook; only the allow-listed files wrap a forward
    (and restore exactly what they found). Library and script code only: tests fake other extensions."""
    offenders = []
    for path in list((ROOT / "lib_initedit").rglob("*.py")) + list((ROOT / "scripts").glob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in FORWARD_ALLOWED:
            continue
        offenders += [f"{rel} {where}" for where in forward_assignments(path.read_text())]
    assert not offenders, offenders


def test_allowed_forward_wrappers_restore_it():
    for rel in FORWARD_ALLOWED:
        path = ROOT / rel
        assert path.exists(), f"{rel} is on the allow-list but does not exist: drop it from the list"
        text = path.read_text()
        assert forward_assignments(text), f"{rel} is allowed to wrap a forward but does not: drop it from the list"
        assert "del module.forward" in text or "delattr" in text, f"{rel} must restore a forward it did not find"


LAB_FILES = {"tests/webui/test_controlnet.py", "tests/webui/test_forge.py", "tests/webui/test_reforge.py",
             "tests/webui/test_neo_families.py"}


def test_every_test_has_one_tier():
    """tests/conftest.py gives each test its folder's tier unless the file names another; a test without a tier
    (or a lab file that lost its marker) shows up in this selection."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "--continue-on-collection-errors", "-m", "lab or not (unit or webui or browser or comfy)",
                          "tests"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    # a module that fails to import fails on its own; 3 or 4: pytest refused the run (e.g. a test with two tiers)
    assert res.returncode not in (3, 4), res.stdout[-3000:] + res.stderr[-3000:]
    files = {line.split("::")[0] for line in res.stdout.splitlines() if "::" in line}
    assert files == LAB_FILES, (sorted(files - LAB_FILES), sorted(LAB_FILES - files))


def test_tier_of_a_folder():
    from tests.conftest import tier_of_path

    tests = ROOT / "tests"
    assert tier_of_path(tests / "test_spec.py") == "unit"
    assert tier_of_path(tests / "toy" / "test_toy.py") == "unit"
    assert tier_of_path(tests / "webui" / "test_api.py") == "webui"
    assert tier_of_path(tests / "browser" / "test_editor_harness.py") == "browser"
    assert tier_of_path(tests / "comfy" / "test_nodes.py") == "comfy"
