"""The package's structure, as ARCHITECTURE.md describes it.

- import-linter checks the contracts in ``pyproject.toml``: the layers (each
  layer imports only from the layers below it), the compute layer's own layers,
  and no import cycle between sibling modules anywhere in simgap;
- no module uses another module's private (underscore) name;
- imports inside functions are kept for optional heavy dependencies and the
  lazily loaded CUDA module, never for simgap's own modules (which would hide a
  cycle from the linter).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import simgap

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(simgap.__file__).resolve().parent
SOURCES = sorted(PACKAGE.rglob("*.py"))

# The one simgap module that may be imported inside a function: the compiled
# CUDA module, loaded on first use.  (Third-party optional or heavy
# dependencies, such as torch, scikit-learn or umap, may be imported lazily.)
LAZY_OK = {"simgap._cuda"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name of the module an ``ImportFrom`` reads from."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _parse(path: Path):
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_import_linter_contracts_hold():
    # In a child process: import-linter configures logging with
    # disable_existing_loggers, which would silence the "simgap" logger for the
    # tests that run after this one.
    pytest.importorskip("importlinter.cli")
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True))")
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT / "pyproject.toml")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_contracts_cover_every_top_level_module():
    """A new module must be placed in a layer (else the linter would not check it)."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = config["contracts"][0]["layers"]
    listed = {m.strip() for layer in layers for m in layer.replace(":", "|").split("|")}
    top = {_module_name(p).split(".")[1] for p in SOURCES if _module_name(p) != "simgap"}
    top -= {"__main__", "_html"}  # the entry point; the report's template (imported by report only)
    missing = sorted(f"simgap.{m}" for m in top if f"simgap.{m}" not in listed)
    assert not missing, f"modules in no layer of pyproject.toml: {missing}"


def test_no_private_name_used_outside_its_module():
    found = []
    modules = {_module_name(p) for p in SOURCES}
    for path in SOURCES:
        name = _module_name(path)
        tree = _parse(path)
        imported_modules = {}  # local alias -> simgap module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                src = _absolute(name, path.name == "__init__.py", node)
                if not src.startswith("simgap"):
                    continue
                for alias in node.names:
                    full = f"{src}.{alias.name}"
                    if full in modules:
                        imported_modules[alias.asname or alias.name] = full
                        continue
                    if alias.name.startswith("_") and full not in ("simgap._C", "simgap._cuda"):
                        found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: from {src} import {alias.name}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in imported_modules and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not found, "private names used outside their module:\n" + "\n".join(found)


def test_function_level_imports_are_only_for_optional_dependencies():
    found = []
    for path in SOURCES:
        name = _module_name(path)
        tree = _parse(path)
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    src = _absolute(name, path.name == "__init__.py", node)
                    targets = [f"{src}.{a.name}" if src == "simgap" else src for a in node.names]
                else:
                    continue
                for t in targets:
                    if t.startswith("simgap") and not any(t == ok or t.startswith(ok + ".") for ok in LAZY_OK):
                        found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {t}")
    assert not found, "simgap modules imported inside functions (move them to the top of the module):\n" + "\n".join(found)
