"""One writer at a time on a store (issue 18.5): two processes running ``to_store(resume=True)``
at once destroyed a complete store (its manifest said 3,000 rows, its data file held 0).

Every writer holds an exclusive lock on the store from its first look at the folder to its
commit; a second writer is refused with StoreError ("in use"); a killed writer's lock never
blocks; and a writer never commits a manifest that does not match the data file."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS_DIR)

import simgap  # noqa: E402
import simgap.store as store_mod  # noqa: E402
import simgap.store.lock as lock_mod  # noqa: E402
from _models import FailingBatches, LazyImages, cnn  # noqa: E402
from simgap import StoreError  # noqa: E402
from simgap.store import merge_stores  # noqa: E402

LOCK = store_mod.LOCK_FILE
X = np.arange(60.0, dtype=np.float32).reshape(20, 3)


def writer(path, **kw):
    args = dict(info={"model_class": None, "layer": None, "pooling": None}, resume=False, overwrite=False,
                metadata=None, expected_count=None, checkpoint_every=1)
    args.update(kw)
    return store_mod.StoreWriter(path, **args)


def in_use(path):
    return pytest.raises(StoreError, match=f"store at {path} is in use by another writer")


# ----------------------------------------------------------------------------
# In one process
# ----------------------------------------------------------------------------


def test_a_second_writer_is_refused_while_the_first_writes(tmp_path):
    path = tmp_path / "s"
    w = writer(path)
    assert w.start() == 0
    w.append(X[:8])
    assert (path / LOCK).exists()
    with in_use(path):
        simgap.save_embeddings(path, np.ones((3, 3)), overwrite=True)
    with in_use(path):
        writer(path, resume=True).start()
    with in_use(path):
        merge_stores([simgap.save_embeddings(tmp_path / "other", X)], path, overwrite=True)
    with in_use(path):
        simgap.Embedder(torch.nn.Identity(), progress=False).to_store(X, path, resume=True)
    w.append(X[8:])  # the refused writers touched nothing
    store = w.finish()
    assert not (path / LOCK).exists()  # released, and the folder left clean
    np.testing.assert_array_equal(simgap.EmbeddingStore(path, verify=True).embeddings, X)
    assert store.count == 20
    simgap.save_embeddings(path, np.ones((3, 3)), overwrite=True)  # free again


@pytest.mark.parametrize("how", ["abort", "discard", "start_fails", "complete", "dropped"])
def test_every_way_out_releases_the_lock(tmp_path, how):
    path = tmp_path / "s"
    if how == "complete":
        simgap.save_embeddings(path, X)
        w = writer(path, resume=True)
        assert w.start() == 20 and w.complete
    elif how == "start_fails":
        simgap.save_embeddings(path, X)
        with pytest.raises(FileExistsError):
            writer(path).start()
    else:
        w = writer(path)
        w.start()
        w.append(X[:5])
        if how == "abort":
            w.abort()
        elif how == "discard":
            w.discard()
        else:
            w._file.close()
            del w  # garbage collected without finish or abort
    assert not (path / LOCK).exists()
    simgap.save_embeddings(path, X, overwrite=True)


def test_a_lock_inherited_by_a_forked_child_is_not_released_by_it(tmp_path):
    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    path = tmp_path / "s"
    w = writer(path)
    w.start()
    pid = os.fork()
    if pid == 0:  # the child lets go of its copy (as a DataLoader worker might at exit)
        try:
            w._release()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert (path / LOCK).exists()
    with in_use(path):
        writer(path, overwrite=True).start()
    w.append(X)
    w.finish()
    assert not (path / LOCK).exists()


def test_a_file_system_without_locks_writes_with_a_warning(tmp_path, monkeypatch):
    class NoLocks:
        LOCK_EX, LOCK_NB = 2, 4

        @staticmethod
        def flock(fd, op):
            raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_mod, "fcntl", NoLocks)
    with pytest.warns(RuntimeWarning, match="does not support file locks"):
        store = simgap.save_embeddings(tmp_path / "s", X)
    np.testing.assert_array_equal(store.embeddings, X)


def test_a_stale_lock_file_is_not_foreign_and_does_not_block(tmp_path):
    """A killed writer leaves its lock file (not its lock): copying, merging and writing work."""
    path = tmp_path / "s"
    simgap.save_embeddings(path, X, metadata={"id": np.arange(20)})
    (path / LOCK).write_bytes(b"")  # as left by a killed writer
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    np.testing.assert_array_equal(simgap.EmbeddingStore(copy, verify=True).embeddings, X)
    merged = merge_stores([path, copy], tmp_path / "merged")
    assert merged.count == 40 and not (tmp_path / "merged" / LOCK).exists()
    simgap.save_embeddings(copy, X[:4], overwrite=True)
    assert not (copy / LOCK).exists()
    empty = tmp_path / "new"
    empty.mkdir()
    (empty / LOCK).write_bytes(b"")
    simgap.save_embeddings(empty, X)  # not a foreign file


# ----------------------------------------------------------------------------
# Never commit a manifest that does not match the data
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "rewrite", "replace", "remove"])
def test_a_data_file_changed_behind_the_writer_is_not_committed(tmp_path, damage):
    """Something that ignores the lock (an older simgap, a user) changes the data file while
    it is written: finish raises and writes no manifest."""
    path = tmp_path / "s"
    w = writer(path)
    w.start()
    w.append(X)
    w._file.flush()
    partial = path / store_mod.PARTIAL_FILE
    if damage == "truncate":
        os.truncate(partial, 128)
    elif damage == "rewrite":  # same size, other rows
        with open(partial, "r+b") as f:
            f.seek(200)
            f.write(b"\x01\x02\x03\x04")
    elif damage == "replace":
        data = partial.read_bytes()
        partial.unlink()
        partial.write_bytes(data)
    else:
        partial.unlink()
    with pytest.raises(StoreError, match="nothing was committed"):
        w.finish()
    assert not (path / "manifest.json").exists()
    assert not (path / LOCK).exists()
    with pytest.raises(StoreError, match="incomplete"):
        simgap.EmbeddingStore(path)


# ----------------------------------------------------------------------------
# Two processes
# ----------------------------------------------------------------------------

HOLDER = """
import sys
import numpy as np
import simgap.store as st
w = st.StoreWriter({path!r}, info={{"model_class": None, "layer": None, "pooling": None}}, resume=True,
                   overwrite=False, metadata=None, expected_count=None, checkpoint_every=1)
w.start()
x = np.arange(3000 * 4, dtype=np.float32).reshape(3000, 4)
w.append(x[:1000])
print("writing", flush=True)
sys.stdin.readline()
w.append(x[1000:])
w.finish()
print("finished", flush=True)
"""

CONTENDER = """
import sys
import numpy as np
import simgap
try:
    simgap.save_embeddings({path!r}, np.ones((5, 4)), overwrite=True)
except simgap.StoreError as exc:
    print(exc)
    sys.exit(3)
"""


def start_holder(path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(path=str(path))], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "writing", proc.communicate()
    return proc


def test_a_second_process_is_refused_and_the_first_completes(tmp_path):
    path = tmp_path / "s"
    holder = start_holder(path)
    try:
        with in_use(path):  # this process
            simgap.Embedder(torch.nn.Identity(), progress=False).to_store(
                np.ones((3000, 4), np.float32), path, resume=True)
        with in_use(path):
            simgap.save_embeddings(path, np.ones((5, 4)), overwrite=True)
        other = subprocess.run([sys.executable, "-c", CONTENDER.format(path=str(path))],
                               capture_output=True, text=True, timeout=120)
        assert other.returncode == 3, other.stderr
        assert f"store at {path} is in use by another writer" in other.stdout
        out, err = holder.communicate("go\n", timeout=120)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert holder.returncode == 0, err
    assert out.strip() == "finished"
    store = simgap.EmbeddingStore(path, verify=True)
    np.testing.assert_array_equal(store.embeddings, np.arange(3000 * 4, dtype=np.float32).reshape(3000, 4))
    assert not (path / LOCK).exists()


def test_a_killed_writer_does_not_block(tmp_path):
    path = tmp_path / "s"
    holder = start_holder(path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.communicate(timeout=60)
    assert (path / LOCK).exists()  # left behind, but no longer locked
    w = writer(path, resume=True)
    assert w.start() == 1000
    w.append(np.arange(1000 * 4, 3000 * 4, dtype=np.float32).reshape(2000, 4))
    store = w.finish()
    np.testing.assert_array_equal(store.embeddings, np.arange(3000 * 4, dtype=np.float32).reshape(3000, 4))
    simgap.EmbeddingStore(path, verify=True)
    assert not (path / LOCK).exists()


RESUMER = """
import sys
sys.path.insert(0, {tests!r})
import os, time, torch, simgap
from _models import cnn, LazyImages
torch.set_num_threads(1)
while not os.path.exists({go!r}):
    time.sleep(0.005)
emb = simgap.Embedder(cnn(), "backbone.layer2", batch_size=16)
try:
    emb.to_store(LazyImages({n}, delay=0.02), {path!r}, resume=True, progress=False, checkpoint_every=1)
except simgap.StoreError as exc:
    if "in use" not in str(exc):
        raise
    print("in use", flush=True)
    sys.exit(3)
print("finished", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("state", ["new", "interrupted", "complete"])
def test_two_processes_resuming_one_store_at_once(tmp_path, state):
    """The issue's case: both run Embedder.to_store(path, resume=True) at the same moment.  Each
    either completes (or finds the store complete) or is refused; the store is intact."""
    n, path, go = 320, tmp_path / "s", tmp_path / "go"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        emb = simgap.Embedder(cnn(), "backbone.layer2", batch_size=16)
        ref = emb.to_store(LazyImages(n), tmp_path / "ref", progress=False)
        if state == "interrupted":
            with pytest.raises(RuntimeError):
                data = np.stack([t.numpy() for t in LazyImages(n)])
                emb.to_store(FailingBatches(data, 16, fail_after=4), path, progress=False, checkpoint_every=1)
        elif state == "complete":
            emb.to_store(LazyImages(n), path, progress=False)
    finally:
        torch.set_num_threads(threads)
    script = RESUMER.format(tests=TESTS_DIR, go=str(go), n=n, path=str(path))
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    try:
        time.sleep(0.5)
        go.write_text("go")
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 0], [0, 3]), results
    assert all(out.strip() in ("finished", "in use") for out, _ in results), results
    store = simgap.EmbeddingStore(path, verify=True)
    assert store.count == n
    assert store.manifest["checksum"] == ref.manifest["checksum"]
    assert not (path / LOCK).exists()
    assert json.loads((path / "manifest.json").read_text())["count"] == n
