"""The CUDA module's argument names, read from its binding source, against the CPU stand-in.

CI has no GPU and no ``simgap._cuda``: the CUDA orchestration is tested through a
stand-in module (``_make_fake`` in the tests).  Its functions must take the
arguments of the real bindings, with the same names in the same order and
keyword-only where the bindings are, or a call that passes on the CPU fails on a
GPU.  The bindings are read from ``cpp/bindings/module_cuda.cpp`` (every
``py::arg``, and ``py::kw_only()``), so no GPU and no CUDA build is needed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
BINDINGS = ROOT / "cpp" / "bindings" / "module_cuda.cpp"
# Bindings with more arguments than this take them by name only.
MAX_POSITIONAL = 4


class Signature(NamedTuple):
    names: list[str]  # every argument, in order
    keyword_only: list[str]  # the arguments that must be passed by name


def binding_signatures() -> dict[str, Signature]:
    """{function: Signature} for every m.def of the CUDA module."""
    body = BINDINGS.read_text().split("PYBIND11_MODULE(_cuda, m)", 1)[1]
    out = {}
    for chunk in body.split("m.def(")[1:]:
        name = re.match(r'\s*"(\w+)"', chunk).group(1)
        chunk = re.split(r"\bm\.attr\(|\bsimgap::export_", chunk, maxsplit=1)[0]
        names = re.findall(r'py::arg\("(\w+)"\)', chunk)
        kw = chunk.find("py::kw_only()")
        keyword_only = [] if kw < 0 else re.findall(r'py::arg\("(\w+)"\)', chunk[kw:])
        out[name] = Signature(names, keyword_only)
    return out


def binding_arguments() -> dict[str, list[str]]:
    """{function: [argument names in order]} for every m.def of the CUDA module."""
    return {name: sig.names for name, sig in binding_signatures().items()}


def stand_in_signatures() -> dict[str, Signature]:
    """{function: Signature} of the stand-in's functions (found by name in tests/)."""
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        text = path.read_text()
        if not re.search(r"^def _make_fake\(", text, re.M):
            continue
        tree = ast.parse(text)
        fake = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "_make_fake")
        out = {}
        for f in fake.body:
            if isinstance(f, ast.FunctionDef):
                a = f.args
                positional = [p.arg for p in a.posonlyargs + a.args]
                keyword_only = [p.arg for p in a.kwonlyargs]
                out[f.name] = Signature(positional + keyword_only, keyword_only)
        return out
    raise AssertionError("no _make_fake (the CUDA stand-in) under tests/")


def test_binding_source_parses():
    args = binding_arguments()
    assert args["gram_contract"][:2] == ["gram", "ld"] and args["gram_contract"][-2:] == ["device", "stream"]
    assert args["device_count"] == []
    sigs = binding_signatures()
    assert sigs["gram_contract"].keyword_only == sigs["gram_contract"].names
    assert sigs["sort_rows_temp_bytes"].keyword_only == []


def test_long_bindings_are_keyword_only():
    """A binding of more than MAX_POSITIONAL arguments puts py::kw_only() before
    all of them: its callers name every argument."""
    for name, sig in binding_signatures().items():
        if len(sig.names) > MAX_POSITIONAL:
            assert sig.keyword_only == sig.names, f"{name}: py::kw_only() must come before every py::arg"


def test_stand_in_takes_the_bindings_arguments():
    real = {name: sig for name, sig in binding_signatures().items() if sig.names}
    fake = stand_in_signatures()
    assert sorted(fake) == sorted(real), "the stand-in and the bindings define different functions"
    for name, sig in real.items():
        assert fake[name].names == sig.names, f"{name}: stand-in {fake[name].names} vs binding {sig.names}"
        assert fake[name].keyword_only == sig.keyword_only, (
            f"{name}: keyword-only in the stand-in {fake[name].keyword_only} vs binding {sig.keyword_only}")
