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


def test_runtime_needs_nothing_the_webui_lacks():
    allowed = {"torch", "numpy", "einops", "PIL", "gradio", "modules", "safetensors", "lib_initedit", "ldm", "sgm"}
    stdlib = {"__future__", "ast", "base64", "binascii", "contextlib", "dataclasses", "html", "io", "json", "math",
              "random", "re", "typing", "os", "sys", "pathlib", "time", "argparse", "itertools", "functools",
              "collections", "hashlib", "struct", "zlib", "copy", "enum", "textwrap", "string", "warnings", "types",
              "statistics", "subprocess", "tempfile", "shutil", "glob", "logging", "platform", "datetime", "heapq",
              "operator", "threading", "traceback", "inspect", "importlib", "gc", "tracemalloc", "resource"}
    paths = [p for p in (ROOT / "lib_initedit").rglob("*.py") if "toy" not in p.parts and p.name != "demo.py"]
    paths += list((ROOT / "scripts").glob("*.py"))
    bad = [f"{p.relative_to(ROOT)}: {m}" for p in paths for m in imported_modules(p)
           if m.split(".")[0] not in allowed | stdlib]
    assert not bad, bad


def test_no_forward_is_replaced_in_the_library():
    for path in (ROOT / "lib_initedit").rglob("*.py"):
        text = path.read_text()
        assert ".forward =" not in text and "del " + "module.forward" not in text, path
