"""The one atomic file writer (simgap._util.files): modes, failures, the umask, threads."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading

import pytest

from simgap._util import files

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def current_umask() -> int:
    """The process umask, read without changing it (Linux: /proc/self/status)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:  # pragma: no cover
        pass
    pytest.skip("the umask cannot be read without changing it on this platform")


def write_file(tmp, text="new"):
    with open(tmp, "w") as fh:
        fh.write(text)


WRITERS = {
    "bytes": lambda p: files.atomic_write_bytes(p, b"new"),
    "text": lambda p: files.atomic_write_text(p, "new"),
    "json": lambda p: files.atomic_write_json(p, {"a": 1}),
    "callback": lambda p: files.atomic_write(p, write_file),
}


def test_each_form_writes_the_content(tmp_path):
    files.atomic_write_bytes(tmp_path / "b", b"\x00\x01")
    files.atomic_write_text(tmp_path / "t", "é\n", encoding="latin-1")
    files.atomic_write_json(tmp_path / "j.json", {"b": [1, 2], "a": None})
    with files.replacing(tmp_path / "c.csv") as tmp:
        assert tmp.endswith(".csv") and os.path.basename(tmp).startswith(".simgap-")
        assert files.is_temp_name(os.path.basename(tmp))
        with open(tmp, "w") as fh:
            fh.write("x,y\n")
    assert (tmp_path / "b").read_bytes() == b"\x00\x01"
    assert (tmp_path / "t").read_bytes() == "é\n".encode("latin-1")
    assert (tmp_path / "j.json").read_text() == json.dumps({"a": None, "b": [1, 2]}, indent=2) + "\n"
    assert (tmp_path / "c.csv").read_text() == "x,y\n"
    assert sorted(os.listdir(tmp_path)) == ["b", "c.csv", "j.json", "t"]


def test_the_target_is_checked(tmp_path):
    with pytest.raises(TypeError, match="out must be a str or os.PathLike"):
        files.atomic_write_text(12, "x", name="out")
    with pytest.raises(FileNotFoundError, match="path: the folder"):
        files.atomic_write_bytes(tmp_path / "no" / "f", b"x")
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        files.atomic_write_bytes(tmp_path / "d", b"x")
    assert os.listdir(tmp_path) == ["d"] and os.listdir(tmp_path / "d") == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o027])
def test_a_new_file_gets_0666_less_the_umask(tmp_path, umask):
    """In a child process, so that this process's umask is never changed."""
    code = textwrap.dedent(f"""
        import os, sys
        os.umask({umask})
        from simgap._util import files
        folder = sys.argv[1]
        files.atomic_write_bytes(os.path.join(folder, "b"), b"x")
        files.atomic_write_text(os.path.join(folder, "t"), "x")
        files.atomic_write_json(os.path.join(folder, "j"), {{}})
        def write(tmp):
            with open(tmp, "w") as fh:
                fh.write("x")
        files.atomic_write(os.path.join(folder, "c"), write)
        assert os.umask(0) == {umask}  # unchanged by the writes
    """)
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)
    for name in ("b", "t", "j", "c"):
        assert mode(tmp_path / name) == 0o666 & ~umask, name


@pytest.mark.parametrize("form", sorted(WRITERS))
@pytest.mark.parametrize("old_mode", [0o600, 0o640, 0o444, 0o755])
def test_a_replaced_file_keeps_its_mode(tmp_path, form, old_mode):
    target = tmp_path / "f"
    target.write_text("old")
    os.chmod(target, old_mode)
    WRITERS[form](target)
    assert mode(target) == old_mode
    assert target.read_text() != "old"
    assert os.listdir(tmp_path) == ["f"]


@pytest.mark.parametrize("form", sorted(WRITERS))
def test_the_process_umask_is_unchanged(tmp_path, form):
    before = current_umask()
    WRITERS[form](tmp_path / "new")
    WRITERS[form](tmp_path / "new")  # and a replacement
    assert current_umask() == before
    assert mode(tmp_path / "new") == 0o666 & ~before


class Boom(Exception):
    pass


def test_a_failure_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")

    def failing(tmp):
        with open(tmp, "w") as fh:
            fh.write("partial")
        raise Boom

    with pytest.raises(Boom):
        files.atomic_write(target, failing)
    with pytest.raises(Boom), files.replacing(target) as tmp:
        with open(tmp, "w") as fh:
            fh.write("partial")
        raise Boom
    with pytest.raises(TypeError):
        files.atomic_write_json(target, {"x": object()})  # not serialisable: fails before any file
    with pytest.raises(UnicodeEncodeError):
        files.atomic_write_text(target, "é", encoding="ascii")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]


def test_a_failure_while_writing_the_bytes_removes_the_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        files.atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]


def test_a_failed_rename_removes_the_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(PermissionError):
        files.atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]


def test_the_rename_is_made_durable(tmp_path, monkeypatch):
    """The temporary file is fsync'd before the rename and the folder after it."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    for form in sorted(WRITERS):
        events.clear()
        WRITERS[form](tmp_path / "f")
        assert events == ["fsync-file", "replace", "fsync-dir"], form


def test_concurrent_writers_each_leave_a_complete_file(tmp_path):
    """Threads writing the same target and their own targets: no collision of
    temporary names, every file is one writer's whole content, nothing left over."""
    n, size = 16, 200_000
    shared = tmp_path / "shared.bin"
    errors = []
    start = threading.Barrier(n)

    def work(i):
        try:
            data = bytes([i]) * size
            start.wait()
            for _ in range(5):
                files.atomic_write_bytes(shared, data)
                files.atomic_write_bytes(tmp_path / f"own{i}.bin", data)
                files.atomic_write(tmp_path / f"cb{i}.txt", lambda tmp: write_file(tmp, str(i) * 1000))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    content = shared.read_bytes()
    assert len(content) == size and content == bytes([content[0]]) * size
    for i in range(n):
        assert (tmp_path / f"own{i}.bin").read_bytes() == bytes([i]) * size
        assert (tmp_path / f"cb{i}.txt").read_text() == str(i) * 1000
    assert not [name for name in os.listdir(tmp_path) if files.is_temp_name(name)]
    assert len(os.listdir(tmp_path)) == 1 + 2 * n


def test_temporary_names():
    assert files.is_temp_name(".simgap-0123456789abcdef")
    assert files.is_temp_name(".simgap-0123456789abcdef.json")
    assert not files.is_temp_name("simgap-0123456789abcdef.json")
    assert not files.is_temp_name(".simgap-0123.json")
    assert not files.is_temp_name("manifest.json")
