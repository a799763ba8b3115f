"""The embedding store: layout, metadata, resume after interruption, damage detection,
bounded memory, as_embeddings (issue 5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS_DIR)

import simgap  # noqa: E402
import simgap.store as store_mod  # noqa: E402
import simgap.store.tables as tables_mod  # noqa: E402
from _models import CountingModel, FailingBatches, ImageDataset, LazyImages, cnn, images  # noqa: E402
from simgap import StoreError  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402


VERIFIED = store_mod.VERIFIED_FILE  # the verification record, written at the commit


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture
def small_store(tmp_path):
    """A complete store of 7 x 4 rows with metadata, and its rows."""
    x = np.arange(28, dtype=np.float32).reshape(7, 4) / 3
    meta = {"id": np.arange(7), "label": ["a", "b", "c", "a", "b", "c", "a"],
            "sim_param": np.linspace(0, 1, 7), "real": [True, False] * 3 + [True]}
    simgap.save_embeddings(tmp_path / "s", x, metadata=meta, info={"model_class": "M", "layer": "l"})
    return tmp_path / "s", x, meta


# ----------------------------------------------------------------------------
# Layout, manifest, metadata
# ----------------------------------------------------------------------------


def test_save_and_load_round_trip(small_store):
    path, x, meta = small_store
    assert sorted(os.listdir(path)) == [VERIFIED, "embeddings.npy", "manifest.json", "metadata.parquet"]
    arr, m = simgap.load_embeddings(path, verify=True)
    assert isinstance(arr, np.memmap) and arr.dtype == np.float32 and not arr.flags.writeable
    np.testing.assert_array_equal(arr, x)
    np.testing.assert_array_equal(np.load(path / "embeddings.npy"), x)  # a plain .npy file
    assert list(m) == ["id", "label", "sim_param", "real"]
    np.testing.assert_array_equal(m["id"], meta["id"])
    np.testing.assert_array_equal(m["label"], meta["label"])
    np.testing.assert_array_equal(m["sim_param"], meta["sim_param"])
    np.testing.assert_array_equal(m["real"], meta["real"])
    manifest = json.loads((path / "manifest.json").read_text())
    for key in ("model_class", "layer", "pooling", "dim", "count", "dtype", "created", "checksum",
                "metadata_checksum"):
        assert key in manifest
    assert (manifest["count"], manifest["dim"], manifest["dtype"]) == (7, 4, "float32")
    assert manifest["model_class"] == "M" and manifest["checksum"].startswith("sha256:")
    s = simgap.EmbeddingStore(path)
    assert len(s) == 7 and s.shape == (7, 4) and s.to_dict() == manifest
    assert "EmbeddingStore(" in repr(s)


def test_metadata_falls_back_to_csv_without_pyarrow(tmp_path, monkeypatch):
    monkeypatch.setattr(tables_mod, "_pyarrow", lambda: None)
    meta = {"id": np.arange(5), "name": ["x", "y,z", 'q"uote', "", "é"],
            "w": np.array([0.1, 1 / 3, -2.5, 1e-30, 7.0]), "flag": [True, False, True, True, False]}
    simgap.save_embeddings(tmp_path / "s", np.ones((5, 2)), metadata=meta)
    assert (tmp_path / "s" / "metadata.csv").exists()
    _, m = simgap.load_embeddings(tmp_path / "s")
    np.testing.assert_array_equal(m["id"], meta["id"])
    assert m["id"].dtype == np.int64 and m["flag"].dtype == bool
    np.testing.assert_array_equal(m["name"], meta["name"])
    np.testing.assert_array_equal(m["w"], meta["w"])  # floats round-trip exactly
    np.testing.assert_array_equal(m["flag"], meta["flag"])


def test_parquet_store_without_pyarrow_says_what_to_install(small_store, monkeypatch):
    path, _, _ = small_store
    monkeypatch.setattr(tables_mod, "_pyarrow", lambda: None)
    s = simgap.EmbeddingStore(path)  # arrays-only use needs no pyarrow
    assert s.embeddings.shape == (7, 4)
    with pytest.raises(ImportError, match="pyarrow"):
        s.metadata


def test_embedder_store_equals_in_memory_result(tmp_path):
    model, x = cnn(), images(50)
    emb = simgap.Embedder(model, "backbone.layer2", batch_size=16)
    meta = {"id": np.arange(50)}
    s = emb.to_store(x, tmp_path / "s", metadata=meta, progress=False)
    assert isinstance(s, simgap.EmbeddingStore)
    np.testing.assert_array_equal(s.embeddings, emb(x, progress=False))
    m = s.to_dict()
    assert m["layer"] == "backbone.layer2" and m["pooling"] == "auto" and m["model_class"].endswith("TinyCNN")
    assert not (tmp_path / "s" / "progress.json").exists()
    assert not (tmp_path / "s" / "embeddings.npy.partial").exists()


# ----------------------------------------------------------------------------
# Resume after an interruption
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("checkpoint_every", [1, 3])
def test_resume_after_interrupted_iterable_is_bit_identical(tmp_path, exc, checkpoint_every):
    x = images(100, seed=3)
    meta = {"id": np.arange(100)}
    ref = simgap.Embedder(CountingModel(cnn()), "inner.backbone.layer2", batch_size=8).to_store(
        FailingBatches(x, 8), tmp_path / "ref", metadata=meta, progress=False)

    model = CountingModel(cnn())
    emb = simgap.Embedder(model, "inner.backbone.layer2", batch_size=8)
    path = tmp_path / "s"
    with pytest.raises(exc, match="simulated interruption"):
        emb.to_store(FailingBatches(x, 8, fail_after=5, exc=exc), path, metadata=meta, progress=False,
                     checkpoint_every=checkpoint_every)
    # never looks complete
    assert not (path / "manifest.json").exists()
    with pytest.raises(StoreError, match="interrupted after 40 rows.*resume=True"):
        simgap.load_embeddings(path)
    with pytest.raises(FileExistsError, match="resume=True"):
        emb.to_store(FailingBatches(x, 8), path, metadata=meta, progress=False)

    model.calls = 0
    s = emb.to_store(FailingBatches(x, 8), path, metadata=meta, resume=True, progress=False)
    assert model.calls == 13 - 5  # the 5 stored batches are not recomputed
    assert read_bytes(path / "embeddings.npy") == read_bytes(tmp_path / "ref" / "embeddings.npy")
    assert s.manifest["checksum"] == ref.manifest["checksum"]
    s.verify()
    np.testing.assert_array_equal(s.metadata["id"], meta["id"])


def test_resume_from_array_and_dataset_slices_instead_of_reading(tmp_path):
    x = images(45, seed=1)
    emb = simgap.Embedder(cnn(), batch_size=10)
    ref = emb.to_store(x, tmp_path / "ref", progress=False)
    for kind, data in [("array", x), ("dataset", ImageDataset(x)), ("loader", DataLoader(ImageDataset(x), 10))]:
        path = tmp_path / kind

        def write_two_batches_then_fail():
            w = store_mod.StoreWriter(path, info=dict(emb.config(), source="simgap.Embedder"),
                                      resume=False, overwrite=False, metadata=None,
                                      expected_count=45, checkpoint_every=1)
            w.start()
            w.append(np.asarray(ref.embeddings[:10]))
            w.append(np.asarray(ref.embeddings[10:20]))
            w.append(np.asarray(ref.embeddings[20:23]))  # written after the last checkpoint...
            w._file.close()  # ...then the process dies without recording it

        write_two_batches_then_fail()
        # progress.json says 20 valid rows: the 3 rows after it are discarded on resume
        store = emb.to_store(data, path, resume=True, progress=False)
        assert read_bytes(path / "embeddings.npy") == read_bytes(tmp_path / "ref" / "embeddings.npy"), kind
        assert store.manifest["checksum"] == ref.manifest["checksum"]


def test_resume_of_a_complete_store_returns_it(tmp_path):
    model = CountingModel(cnn())
    emb = simgap.Embedder(model, batch_size=10)
    emb.to_store(images(20), tmp_path / "s", progress=False)
    calls = model.calls
    s = emb.to_store(images(20), tmp_path / "s", resume=True, progress=False)
    assert model.calls == calls and s.count == 20
    with pytest.raises(StoreError, match="complete with 20 rows but the data has 30"):
        emb.to_store(images(30), tmp_path / "s", resume=True, progress=False)


def test_resume_refuses_a_different_layer(tmp_path):
    x = images(40)
    with pytest.raises(RuntimeError):
        simgap.Embedder(cnn(), "backbone.layer2", batch_size=8).to_store(
            FailingBatches(x, 8, fail_after=2), tmp_path / "s", progress=False)
    with pytest.raises(StoreError, match="layer='backbone.layer2'.*layer='backbone.relu1'"):
        simgap.Embedder(cnn(), "backbone.relu1", batch_size=8).to_store(
            FailingBatches(x, 8), tmp_path / "s", resume=True, progress=False)


def test_existing_store_needs_overwrite_or_resume(tmp_path):
    emb = simgap.Embedder(cnn(), batch_size=8)
    emb.to_store(images(10), tmp_path / "s", progress=False)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        emb.to_store(images(12), tmp_path / "s", progress=False)
    s = emb.to_store(images(12), tmp_path / "s", overwrite=True, progress=False)
    assert s.count == 12
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        emb.to_store(images(4), tmp_path / "other", overwrite=True, progress=False)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="path .* is a file"):
        emb.to_store(images(4), tmp_path / "afile", progress=False)


def test_killed_process_resumes_bit_identical(tmp_path):
    """SIGKILL a child mid-run, then resume here: equal to an uninterrupted store, bit for bit."""
    n, path = 640, tmp_path / "killed"
    child = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {TESTS_DIR!r})
        import torch, simgap
        from _models import cnn, LazyImages
        torch.set_num_threads(1)
        emb = simgap.Embedder(cnn(), "backbone.layer2", batch_size=16)
        emb.to_store(LazyImages({n}, delay=0.05), {str(path)!r}, progress=False, checkpoint_every=1)
        print("finished")
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        rows = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                rows = json.loads((path / "progress.json").read_text())["rows"]
            except (OSError, ValueError, KeyError):
                rows = 0
            if rows >= 160:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (path / "manifest.json").exists()
    with pytest.raises(StoreError, match="incomplete"):
        simgap.EmbeddingStore(path)
    recorded = json.loads((path / "progress.json").read_text())["rows"]
    assert 160 <= recorded < n and recorded % 16 == 0

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        emb = simgap.Embedder(cnn(), "backbone.layer2", batch_size=16)
        s = emb.to_store(LazyImages(n), path, resume=True, progress=False)
        ref = emb.to_store(LazyImages(n), tmp_path / "ref", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert s.count == n
    assert read_bytes(path / "embeddings.npy") == read_bytes(tmp_path / "ref" / "embeddings.npy")
    assert s.manifest["checksum"] == ref.manifest["checksum"]


def test_interrupted_before_first_checkpoint_restarts(tmp_path):
    emb = simgap.Embedder(cnn(), batch_size=8)
    with pytest.raises(RuntimeError):
        emb.to_store(FailingBatches(images(20), 8, fail_after=0), tmp_path / "s", progress=False)
    s = emb.to_store(FailingBatches(images(20), 8), tmp_path / "s", resume=True, progress=False)
    assert s.count == 20


# ----------------------------------------------------------------------------
# Damaged stores
# ----------------------------------------------------------------------------


def _edit_manifest(path, **changes):
    m = json.loads((path / "manifest.json").read_text())
    m.update(changes)
    (path / "manifest.json").write_text(json.dumps(m))


def test_store_error_is_a_value_error():
    assert issubclass(StoreError, ValueError)


def test_truncated_npy(small_store):
    path, _, _ = small_store
    size = os.path.getsize(path / "embeddings.npy")
    os.truncate(path / "embeddings.npy", size - 10)
    with pytest.raises(StoreError, match="embeddings.npy is truncated.*shape \\(7, 4\\)"):
        simgap.load_embeddings(path)
    os.truncate(path / "embeddings.npy", 50)  # inside the header
    with pytest.raises(StoreError, match="damaged .npy header"):
        simgap.load_embeddings(path)


def test_extra_bytes_in_npy(small_store):
    path, _, _ = small_store
    with open(path / "embeddings.npy", "ab") as f:
        f.write(b"\0" * 16)
    with pytest.raises(StoreError, match="longer than its header says"):
        simgap.load_embeddings(path)


def test_manifest_missing(small_store):
    path, _, _ = small_store
    (path / "manifest.json").unlink()
    with pytest.raises(StoreError, match="manifest.json is missing"):
        simgap.load_embeddings(path)


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ("", "not valid JSON"),
])
def test_manifest_corrupt(small_store, text, match):
    path, _, _ = small_store
    (path / "manifest.json").write_text(text)
    with pytest.raises(StoreError, match=match):
        simgap.load_embeddings(path)


@pytest.mark.parametrize("changes, match", [
    (dict(count=8), "count mismatch.*count=8.*holds 7 rows"),
    (dict(count="7"), "field 'count' should be int"),
    (dict(dim=5), "dimension mismatch"),
    (dict(dtype="float16"), "dtype"),
    (dict(format="other"), "not a simgap embedding manifest"),
    (dict(format_version=99), "upgrade simgap"),
    (dict(metadata_file="metadata.csv"), "metadata.csv is missing"),
])
def test_manifest_inconsistent(small_store, changes, match):
    path, _, _ = small_store
    _edit_manifest(path, **changes)
    with pytest.raises(StoreError, match=match):
        simgap.load_embeddings(path)


def test_manifest_field_missing(small_store):
    path, _, _ = small_store
    m = json.loads((path / "manifest.json").read_text())
    del m["checksum"]
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreError, match="field 'checksum' is missing"):
        simgap.load_embeddings(path)


def test_checksum_mismatch(small_store):
    path, _, _ = small_store
    with open(path / "embeddings.npy", "r+b") as f:
        f.seek(-3, os.SEEK_END)
        b = f.read(1)
        f.seek(-3, os.SEEK_END)
        f.write(bytes([b[0] ^ 0xFF]))
    simgap.load_embeddings(path, verify=False)  # sizes still agree: only the checksum can tell
    with pytest.raises(StoreError, match="checksum mismatch"):
        simgap.load_embeddings(path, verify=True)
    with pytest.raises(StoreError, match="checksum mismatch"):
        simgap.load_embeddings(path)  # the default checks it too (the file changed since its record)
    with pytest.raises(StoreError, match="checksum mismatch"):
        simgap.EmbeddingStore(path).verify()


def test_data_or_metadata_file_missing_or_short(small_store):
    path, _, _ = small_store
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": np.arange(3)}), path / "metadata.parquet")
    with pytest.raises(StoreError, match="metadata mismatch.*3 rows.*7 embeddings"):
        simgap.load_embeddings(path, verify=False)  # the structure is checked without the checksums
    with pytest.raises(StoreError, match="checksum mismatch.*metadata.parquet"):
        simgap.load_embeddings(path)
    (path / "metadata.parquet").unlink()
    with pytest.raises(StoreError, match="metadata.parquet is missing"):
        simgap.load_embeddings(path)
    (path / "embeddings.npy").unlink()
    with pytest.raises(StoreError, match="embeddings.npy is missing"):
        simgap.load_embeddings(path)


def test_not_a_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        simgap.load_embeddings(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        simgap.load_embeddings(tmp_path / "f")
    with pytest.raises(TypeError, match="path"):
        simgap.load_embeddings(3)


# ----------------------------------------------------------------------------
# Bad inputs to the writers
# ----------------------------------------------------------------------------


def test_empty_data_leaves_no_store(tmp_path):
    with pytest.raises(ValueError, match="data contains no samples"):
        simgap.Embedder(cnn()).to_store(iter([]), tmp_path / "s", progress=False)
    assert not (tmp_path / "s" / "manifest.json").exists()
    assert not (tmp_path / "s" / "progress.json").exists()


def test_to_store_argument_errors(tmp_path):
    emb = simgap.Embedder(cnn(), batch_size=4)
    x = images(6)
    with pytest.raises(ValueError, match="metadata has 5 rows but the data has 6"):
        emb.to_store(x, tmp_path / "a", metadata={"id": range(5)}, progress=False)
    with pytest.raises(ValueError, match=r"metadata\['b'\] has 2 values but metadata\['a'\] has 6"):
        emb.to_store(x, tmp_path / "a", metadata={"a": range(6), "b": [1, 2]}, progress=False)
    with pytest.raises(ValueError, match=r"metadata\['a'\] must be 1-D"):
        emb.to_store(x, tmp_path / "a", metadata={"a": np.zeros((6, 2))}, progress=False)
    with pytest.raises(TypeError, match="metadata must be a mapping"):
        emb.to_store(x, tmp_path / "a", metadata=[1, 2], progress=False)
    with pytest.raises(TypeError, match="path"):
        emb.to_store(x, 5, progress=False)
    with pytest.raises(ValueError, match="checkpoint_every"):
        emb.to_store(x, tmp_path / "a", checkpoint_every=0, progress=False)
    with pytest.raises(ValueError, match="resume=True and overwrite=True"):
        emb.to_store(x, tmp_path / "a", resume=True, overwrite=True, progress=False)
    with pytest.raises(TypeError, match="resume"):
        emb.to_store(x, tmp_path / "a", resume="yes", progress=False)
    with pytest.raises(ValueError, match="shuffle=False"):
        emb.to_store(DataLoader(ImageDataset(x), batch_size=2, shuffle=True), tmp_path / "a", progress=False)
    with pytest.raises(TypeError, match="data"):
        emb.to_store(None, tmp_path / "a", progress=False)
    # metadata length is checked at the end when the data length is unknown up front
    with pytest.raises(ValueError, match="metadata has 5 rows but the data gave 6"):
        emb.to_store(iter([torch.from_numpy(x)]), tmp_path / "b", metadata={"id": range(5)}, progress=False)
    assert not (tmp_path / "a").exists() or not (tmp_path / "a" / "manifest.json").exists()


def test_save_embeddings_errors(tmp_path):
    with pytest.raises(ValueError, match="embeddings must be 2-D"):
        simgap.save_embeddings(tmp_path / "a", np.zeros(5))
    with pytest.raises(ValueError, match="at least one row"):
        simgap.save_embeddings(tmp_path / "a", np.zeros((0, 5)))
    with pytest.raises(ValueError, match="embeddings contains NaN"):
        simgap.save_embeddings(tmp_path / "a", np.array([[1.0, np.nan]]))
    assert not (tmp_path / "a" / "embeddings.npy.partial").exists()
    with pytest.raises(TypeError, match="info"):
        simgap.save_embeddings(tmp_path / "b", np.zeros((2, 2)), info={"x": object()})
    with pytest.raises(ValueError, match="chunk_rows"):
        simgap.save_embeddings(tmp_path / "c", np.zeros((2, 2)), chunk_rows=0)


def test_save_embeddings_in_chunks_from_memmap(tmp_path):
    x = np.random.default_rng(0).standard_normal((1000, 3))
    a = simgap.save_embeddings(tmp_path / "a", x, chunk_rows=64)
    b = simgap.save_embeddings(tmp_path / "b", a.embeddings, chunk_rows=333)
    np.testing.assert_array_equal(b.embeddings, x.astype(np.float32))
    assert a.manifest["checksum"] == b.manifest["checksum"]
    c = simgap.save_embeddings(tmp_path / "c", torch.from_numpy(x))
    assert c.manifest["checksum"] == a.manifest["checksum"]


# ----------------------------------------------------------------------------
# as_embeddings
# ----------------------------------------------------------------------------


def test_as_embeddings_accepts_every_kind(small_store):
    path, x, _ = small_store
    for obj in (x, torch.from_numpy(x), str(path), path, simgap.EmbeddingStore(path), x.tolist()):
        out = simgap.as_embeddings(obj)
        assert out.shape == (7, 4)
        np.testing.assert_array_equal(out, x)
    assert isinstance(simgap.as_embeddings(path), np.memmap)
    assert simgap.as_embeddings(x) is x  # no copy


@pytest.mark.parametrize("obj, exc, match", [
    (None, TypeError, "real_data must be"),
    (np.zeros(3), ValueError, "real_data must be 2-D"),
    (np.zeros((2, 2, 2)), ValueError, "real_data must be 2-D"),
    (np.array([["a", "b"]]), TypeError, "real_data has dtype"),
    (torch.zeros(3), ValueError, "real_data must be 2-D"),
    (torch.zeros(2, 2, dtype=torch.complex64), TypeError, "real_data has dtype"),
])
def test_as_embeddings_errors_name_the_argument(obj, exc, match):
    with pytest.raises(exc, match=match):
        simgap.as_embeddings(obj, name="real_data")


# ----------------------------------------------------------------------------
# Bounded memory
# ----------------------------------------------------------------------------


def _can_reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        with open("/proc/self/status") as f:
            return "VmHWM" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not _can_reset_peak_rss(), reason="needs /proc/self/clear_refs and VmHWM (Linux)")
def test_memory_stays_bounded_by_the_batch(tmp_path):
    """Embed ~245 MB of lazily generated inputs into a ~41 MB store; peak RSS grows by far less."""
    child = textwrap.dedent(f"""
        import gc, sys
        sys.path.insert(0, {TESTS_DIR!r})
        import torch, simgap
        from _models import LazyImages
        torch.set_num_threads(2)

        def status(key):
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) * 1024
            raise KeyError(key)

        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 512))
        emb = simgap.Embedder(model, batch_size=256)
        emb.to_store(LazyImages(600, size=32), {str(tmp_path / "warm")!r}, progress=False)  # warm-up
        gc.collect()
        before = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        n = 20000
        store = emb.to_store(LazyImages(n, size=32), {str(tmp_path / "big")!r}, progress=False)
        peak = status("VmHWM")
        assert store.count == n
        print(before, peak, n * 3 * 32 * 32 * 4, n * 512 * 4)
    """)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    before, peak, input_bytes, output_bytes = map(int, out.stdout.split())
    growth = peak - before
    limit = 32 << 20
    assert input_bytes > 6 * limit and output_bytes > limit
    assert growth < limit, f"peak RSS grew by {growth / 2**20:.1f} MiB (limit {limit / 2**20:.0f} MiB)"


def test_distance_functions_take_a_store_or_its_path(tmp_path):
    """Precomputed embeddings are first-class: stores and store paths work wherever arrays do."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    y = (rng.normal(size=(90, 6)) + 0.4).astype(np.float32)
    simgap.save_embeddings(tmp_path / "real", x)
    store = simgap.EmbeddingStore(tmp_path / "real")
    expected = simgap.mmd2(x, y)
    assert simgap.mmd2(store, y) == expected
    assert simgap.mmd2(str(tmp_path / "real"), y) == expected
    assert simgap.sliced_wasserstein(tmp_path / "real", y) == simgap.sliced_wasserstein(x, y)
    assert simgap.prdc(store, y) == simgap.prdc(x, y)
    with pytest.raises((FileNotFoundError, ValueError)):
        simgap.mmd2(tmp_path / "missing", y)


# ---- found by a robustness review (2026-12-01) ---------------------------------------------------

def test_integer_metadata_round_trips_exactly_through_csv(tmp_path, monkeypatch):
    monkeypatch.setattr(tables_mod, "_pyarrow", lambda: None)
    meta = {"big": np.array([2**60 + 1, -3], dtype=np.int64), "u": np.array([2**64 - 1, 0], dtype=np.uint64)}
    simgap.save_embeddings(tmp_path / "s", np.ones((2, 2)), metadata=meta)
    _, m = simgap.load_embeddings(tmp_path / "s")
    for k, v in meta.items():
        assert m[k].dtype == v.dtype
        np.testing.assert_array_equal(m[k], v)


def _old_store(path):
    simgap.save_embeddings(path, np.arange(12.0).reshape(4, 3), metadata={"id": np.arange(4)})
    return sorted(os.listdir(path))


@pytest.mark.parametrize("bad", ["nan", "beyond_float32", "dim", "interrupted"])
def test_a_failed_overwrite_leaves_the_old_store_intact(tmp_path, bad):
    """The old store was wiped when the overwrite started: a NaN, a model that
    does not fit the data or an interruption lost both."""
    path = tmp_path / "s"
    files = _old_store(path)
    if bad in ("nan", "beyond_float32"):
        x = np.ones((10, 2))
        x[5, 0] = np.nan if bad == "nan" else 1e300
        with pytest.raises(ValueError, match="NaN or Inf"):
            simgap.save_embeddings(path, x, overwrite=True)
    elif bad == "dim":
        with pytest.raises(RuntimeError):
            simgap.Embedder(torch.nn.Linear(5, 3), progress=False).to_store(np.ones((10, 7), np.float32), path,
                                                                            overwrite=True)
    else:
        with pytest.raises(RuntimeError):
            simgap.Embedder(torch.nn.Identity(), progress=False).to_store(
                FailingBatches(np.ones((40, 2), np.float32), batch_size=4, fail_after=3), path, overwrite=True, checkpoint_every=1)
    store = simgap.EmbeddingStore(path, verify=True)
    np.testing.assert_array_equal(store.embeddings, np.arange(12.0).reshape(4, 3))
    np.testing.assert_array_equal(store.metadata["id"], np.arange(4))
    if bad != "interrupted":
        assert sorted(os.listdir(path)) == files


def test_an_interrupted_overwrite_resumes_into_the_new_store(tmp_path):
    path = tmp_path / "s"
    _old_store(path)
    emb = simgap.Embedder(torch.nn.Identity(), progress=False)
    data = np.arange(80.0, dtype=np.float32).reshape(40, 2)
    with pytest.raises(RuntimeError):
        emb.to_store(FailingBatches(data, batch_size=4, fail_after=5), path, overwrite=True, checkpoint_every=1)
    assert simgap.EmbeddingStore(path).shape == (4, 3)  # still the old one
    store = emb.to_store(FailingBatches(data, batch_size=4), path, resume=True)
    assert store.shape == (40, 2) and store.metadata is None
    np.testing.assert_array_equal(simgap.EmbeddingStore(path, verify=True).embeddings, data)
    assert sorted(os.listdir(path)) == [VERIFIED, "embeddings.npy", "manifest.json"]  # the old metadata file is gone


def test_an_overwrite_replaces_a_store_completely(tmp_path):
    path = tmp_path / "s"
    _old_store(path)
    store = simgap.save_embeddings(path, np.full((2, 5), 7.0), overwrite=True)
    assert store.shape == (2, 5) and store.metadata is None
    assert sorted(os.listdir(path)) == [VERIFIED, "embeddings.npy", "manifest.json"]


def test_embedder_refuses_non_finite_embeddings(tmp_path):
    emb = simgap.Embedder(lambda b: b * float("nan"), progress=False)
    with pytest.raises(ValueError, match="NaN or Inf"):
        emb.to_store(np.ones((4, 3), np.float32), tmp_path / "s")
    with pytest.raises(StoreError, match="manifest.json is missing"):  # nothing was written
        simgap.EmbeddingStore(tmp_path / "s")


def test_resume_with_fewer_samples_than_already_stored_fails(tmp_path):
    emb = simgap.Embedder(torch.nn.Identity(), progress=False)
    data = np.arange(200.0, dtype=np.float32).reshape(100, 2)
    with pytest.raises(RuntimeError):
        emb.to_store(FailingBatches(data, batch_size=10, fail_after=8), tmp_path / "s", checkpoint_every=1)
    with pytest.raises(ValueError, match="already holds 80 rows"):
        emb.to_store(FailingBatches(data[:50], batch_size=10), tmp_path / "s", resume=True)


# ---- issue 18: metadata checksum, damaged .npy headers, verified by default -----------------------

import simgap.store.reader as reader_mod  # noqa: E402
import simgap.store.verified as verified_mod  # noqa: E402


def flip_byte(path, offset, mask=0x01):
    """XOR one byte of ``path`` in place (the size stays the same)."""
    with open(path, "r+b") as f:
        f.seek(offset, os.SEEK_SET if offset >= 0 else os.SEEK_END)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ mask]))


def wait_for_the_clock(folder):
    """Wait until the file system's clock is past every file of ``folder`` (mtime and ctime),
    so that a verification record written now is trusted (see simgap.store.verified)."""
    newest = max(max(p.stat().st_mtime_ns, p.stat().st_ctime_ns) for p in folder.iterdir())
    probe = folder.parent / "clock-probe"
    deadline = time.monotonic() + 10
    while True:
        probe.write_bytes(b"x")
        if probe.stat().st_mtime_ns > newest or time.monotonic() > deadline:
            break
        time.sleep(0.002)
    probe.unlink()


@pytest.fixture
def hash_calls(monkeypatch):
    """How many times an open hashes the rows."""
    calls = []
    real = reader_mod.hash_file_rows

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(reader_mod, "hash_file_rows", counting)
    return calls


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_flipped_byte_in_the_metadata_is_detected(tmp_path, monkeypatch, fmt):
    """Issue 18.6: the manifest checksummed only the rows; one flipped byte of the metadata
    table silently changed labels."""
    if fmt == "csv":
        monkeypatch.setattr(tables_mod, "_pyarrow", lambda: None)
    path = tmp_path / "s"
    labels = [f"s{i:03d}" for i in range(300)]
    simgap.save_embeddings(path, np.ones((300, 2)), metadata={"label": labels})
    mfile = path / f"metadata.{fmt}"
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["metadata_checksum"].startswith("sha256:")
    raw = read_bytes(mfile)
    for offset in range(4, len(raw)):  # a flip that still reads, with other labels
        with open(mfile, "wb") as f:
            f.write(raw[:offset] + bytes([raw[offset] ^ 0x01]) + raw[offset + 1:])
        try:
            _, meta = simgap.load_embeddings(path, verify=False)
        except StoreError:
            continue
        if meta is not None and list(meta.get("label", [])) != labels:
            break
    else:
        pytest.fail("no silent flip found")
    for verify in (True, "auto"):
        with pytest.raises(StoreError, match=f"checksum mismatch.*metadata.{fmt} hashes to"):
            simgap.load_embeddings(path, verify=verify)
    with pytest.raises(StoreError, match="metadata was modified"):
        simgap.EmbeddingStore(path, verify=False).verify()
    with open(mfile, "wb") as f:  # repaired: verifies again
        f.write(raw)
    _, meta = simgap.load_embeddings(path, verify=True)
    assert list(meta["label"]) == labels


def test_a_store_without_a_metadata_checksum_still_opens(small_store):
    """Stores written before the metadata checksum: rows verified, metadata not checksummed."""
    path, x, meta = small_store
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["metadata_checksum"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    for verify in (True, "auto", False):
        arr, m = simgap.load_embeddings(path, verify=verify)
        np.testing.assert_array_equal(arr, x)
        np.testing.assert_array_equal(m["id"], meta["id"])
    _edit_manifest(path, metadata_checksum=5)
    with pytest.raises(StoreError, match="metadata_checksum"):
        simgap.load_embeddings(path)


@pytest.mark.parametrize("offset, byte", [(10, b"'"), (11, b"("), (60, b"\\"), (65, b"\xff"), (20, b"{")])
def test_a_damaged_npy_header_raises_store_error(small_store, offset, byte):
    """Issue 18.11: damaged header text raised tokenize.TokenError."""
    path, _, _ = small_store
    epath = path / "embeddings.npy"
    with open(epath, "r+b") as f:
        f.seek(offset)
        f.write(byte)
    for verify in (False, True):
        with pytest.raises(StoreError, match="embeddings.npy has a damaged .npy header"):
            simgap.load_embeddings(path, verify=verify)


def test_a_damaged_partial_header_raises_store_error_on_resume(tmp_path):
    emb = simgap.Embedder(torch.nn.Identity(), progress=False)
    data = np.arange(80.0, dtype=np.float32).reshape(40, 2)
    with pytest.raises(RuntimeError):
        emb.to_store(FailingBatches(data, batch_size=4, fail_after=5), tmp_path / "s", checkpoint_every=1)
    with open(tmp_path / "s" / "embeddings.npy.partial", "r+b") as f:
        f.seek(11)
        f.write(b"(")
    with pytest.raises(StoreError, match="embeddings.npy.partial has a damaged .npy header"):
        emb.to_store(FailingBatches(data, batch_size=4), tmp_path / "s", resume=True)


def test_a_flipped_byte_is_detected_by_a_default_open(tmp_path, capsys):
    """Issue 18.15: stores given to mmd2, compare or the CLI were read without their checksum."""
    from simgap import cli

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=(40, 3))
    simgap.save_embeddings(tmp_path / "x", x)
    simgap.save_embeddings(tmp_path / "y", y)
    flip_byte(tmp_path / "x" / "embeddings.npy", -5, 0x40)
    for call in (lambda: simgap.EmbeddingStore(tmp_path / "x"),
                 lambda: simgap.load_embeddings(tmp_path / "x"),
                 lambda: simgap.as_embeddings(tmp_path / "x"),
                 lambda: simgap.mmd2(tmp_path / "x", y),
                 lambda: simgap.mmd2(str(tmp_path / "x"), tmp_path / "y")):
        with pytest.raises(StoreError, match="checksum mismatch"):
            call()
    assert simgap.load_embeddings(tmp_path / "x", verify=False)[0].shape == (50, 3)  # the opt-out
    assert simgap.as_embeddings(tmp_path / "x", verify=False).shape == (50, 3)
    assert cli.main(["distance", str(tmp_path / "x"), str(tmp_path / "y"), "--metric", "mmd"]) == cli.EXIT_INPUT
    assert "checksum mismatch" in capsys.readouterr().err


def test_compare_refuses_a_damaged_store(tmp_path):
    rng = np.random.default_rng(1)
    simgap.save_embeddings(tmp_path / "x", rng.normal(size=(30, 3)))
    flip_byte(tmp_path / "x" / "embeddings.npy", -4, 0x01)  # the last mantissa bit of the last value
    with pytest.raises(StoreError, match="checksum mismatch"):
        simgap.compare(tmp_path / "x", rng.normal(size=(30, 3)))


def test_a_verified_store_is_not_hashed_again(small_store, hash_calls):
    path, x, _ = small_store
    wait_for_the_clock(path)
    simgap.load_embeddings(path)  # verifies (or trusts the writer's record) and records it
    before = len(hash_calls)
    for open_ in (simgap.EmbeddingStore, simgap.load_embeddings, simgap.as_embeddings,
                  lambda p: simgap.mmd2(p, x)):
        open_(path)
    assert len(hash_calls) == before  # later opens are free
    simgap.load_embeddings(path, verify=True)  # True always hashes
    assert len(hash_calls) == before + 1
    simgap.load_embeddings(path, verify=False)
    assert len(hash_calls) == before + 1


def test_the_first_open_hashes_and_records(small_store, hash_calls):
    path, _, _ = small_store
    (path / VERIFIED).unlink()  # as a store written by the previous version
    wait_for_the_clock(path)
    simgap.load_embeddings(path)
    assert len(hash_calls) == 1 and (path / VERIFIED).exists()
    record = json.loads((path / VERIFIED).read_text())
    assert record["checksum"] == json.loads((path / "manifest.json").read_text())["checksum"]
    assert set(record["files"]) == {"embeddings.npy", "metadata.parquet"}
    simgap.load_embeddings(path)
    assert len(hash_calls) == 1


@pytest.mark.parametrize("change", ["flip", "touch", "replace", "metadata", "manifest"])
def test_a_change_after_the_record_is_verified_again(small_store, hash_calls, change):
    path, x, _ = small_store
    wait_for_the_clock(path)
    simgap.load_embeddings(path)
    n = len(hash_calls)
    epath = path / "embeddings.npy"
    if change == "flip":
        flip_byte(epath, -2, 0x10)
    elif change == "touch":  # mtime set back to the recorded one: the ctime still moves
        st = epath.stat()
        os.utime(epath, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "replace":  # same bytes, another file
        data = read_bytes(epath)
        epath.unlink()
        epath.write_bytes(data)
    elif change == "metadata":
        flip_byte(path / "metadata.parquet", 30)
    else:  # the manifest records another checksum
        _edit_manifest(path, checksum="sha256:" + "0" * 64)
    if change in ("flip", "metadata", "manifest"):
        with pytest.raises(StoreError, match="checksum mismatch"):
            simgap.load_embeddings(path)
        with pytest.raises(StoreError, match="checksum mismatch"):  # and again: a failure is not recorded
            simgap.load_embeddings(path)
    else:
        np.testing.assert_array_equal(simgap.load_embeddings(path)[0], x)
    assert len(hash_calls) > n


def test_a_record_no_older_than_the_files_is_not_trusted(small_store, hash_calls):
    """A file changed in the record's own clock tick could keep its keys: checked again."""
    path, _, _ = small_store
    record = path / VERIFIED
    simgap.load_embeddings(path, verify=True)
    data_files = (path / "embeddings.npy", path / "metadata.parquet")
    newest = max(max(p.stat().st_mtime_ns, p.stat().st_ctime_ns) for p in data_files)
    os.utime(record, ns=(newest, newest))
    n = len(hash_calls)
    simgap.load_embeddings(path)
    assert len(hash_calls) == n + 1


def test_an_unwritable_record_is_not_an_error(small_store, hash_calls, monkeypatch):
    path, x, _ = small_store
    (path / VERIFIED).unlink()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(verified_mod, "atomic_write_json", refuse)
    for _ in range(2):  # verified every time, remembered never
        np.testing.assert_array_equal(simgap.load_embeddings(path)[0], x)
    assert len(hash_calls) == 2 and not (path / VERIFIED).exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_a_read_only_store_is_verified_without_a_record(small_store, hash_calls):
    path, x, _ = small_store
    (path / VERIFIED).unlink()
    os.chmod(path, 0o555)
    try:
        for _ in range(2):
            np.testing.assert_array_equal(simgap.load_embeddings(path)[0], x)
    finally:
        os.chmod(path, 0o755)
    assert len(hash_calls) == 2 and not (path / VERIFIED).exists()


@pytest.mark.parametrize("text", ["{", "[]", '{"format": "simgap.verified"}', "\xff"])
def test_a_damaged_record_means_verify_again(small_store, hash_calls, text):
    path, x, _ = small_store
    (path / VERIFIED).write_text(text, encoding="latin1")
    wait_for_the_clock(path)
    np.testing.assert_array_equal(simgap.load_embeddings(path)[0], x)
    assert len(hash_calls) == 1


@pytest.mark.parametrize("verify", ["yes", None, 1.0, "True"])
def test_verify_must_be_true_false_or_auto(small_store, verify):
    path, _, _ = small_store
    with pytest.raises(ValueError, match="verify must be True, False or 'auto'"):
        simgap.load_embeddings(path, verify=verify)
    with pytest.raises(ValueError, match="verify must be"):
        simgap.as_embeddings(path, verify=verify)
