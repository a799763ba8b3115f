"""Every example in the public docstrings runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import simgap

# Public modules and packages (their submodules included), and the compute
# layer's backend module, which holds simgap.backends().
MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(simgap.__path__, "simgap.")
    if not any(part.startswith("_") for part in name.split(".")[1:]) or name == "simgap._ops.backend"
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
