"""Package metadata, backends() and the command line."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import simgap


def test_version_matches_metadata():
    assert isinstance(simgap.__version__, str) and simgap.__version__
    assert simgap.__version__ == importlib.metadata.version("simgap")


def test_backends():
    b = simgap.backends()
    assert set(b) >= {"cpu", "cuda"}
    assert b["cpu"] is True
    assert isinstance(b["cuda"], bool)
    # A fresh dict each call: callers cannot break the library's state by mutating it.
    b["cpu"] = False
    assert simgap.backends()["cpu"] is True


def _run(*args):
    return subprocess.run([sys.executable, "-m", "simgap", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_help():
    out = _run("--help")
    assert out.returncode == 0, out.stderr
    assert "info" in out.stdout


def test_cli_info():
    out = _run("info")
    assert out.returncode == 0, out.stderr
    assert simgap.__version__ in out.stdout
    assert "cuda" in out.stdout.lower()


def test_cli_unknown_command_fails():
    out = _run("no-such-command")
    assert out.returncode != 0


def test_console_script_declared():
    scripts = importlib.metadata.entry_points(group="console_scripts")
    assert any(ep.name == "simgap" for ep in scripts)
