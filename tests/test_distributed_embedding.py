"""Embedder.to_store(distributed=True) on a 2-process gloo group: the merged
store equals a single-process store bit for bit, and an error on one rank is
raised on every rank (no hang)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed  # noqa: E402, F811

import simgap  # noqa: E402

if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():  # pragma: no cover
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

HERE = os.path.abspath(__file__)


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def _data(n=37):
    return np.random.default_rng(1).normal(size=(n, 5)).astype(np.float32)


class _Model(torch.nn.Module):
    """_model(); on rank 1 it fails when asked to (the same class either way, so
    a store it wrote can be resumed)."""

    def __init__(self, fail_on_rank1: bool):
        super().__init__()
        self.inner = _model()
        self.fail_on_rank1 = fail_on_rank1

    def forward(self, x):
        if self.fail_on_rank1 and torch.distributed.get_rank() == 1:
            raise RuntimeError("rank one cannot embed")
        return self.inner(x)


def _worker(rank: int, world: int, tmp: str, mode: str, n: int) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp}/rendezvous-{mode}", rank=rank, world_size=world)
    out = {"rank": rank}
    try:
        model = _Model(fail_on_rank1=(mode == "fail"))
        data = _data(n)
        store = simgap.Embedder(model, batch_size=4, progress=False).to_store(
            data, os.path.join(tmp, "store"), metadata={"id": np.arange(len(data))},
            distributed=True, resume=(mode == "resume"))
        out["path"] = str(store.path)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    with open(os.path.join(tmp, f"out{rank}.json"), "w") as fh:
        json.dump(out, fh)
    torch.distributed.destroy_process_group()


def _run(tmp, mode, n=40, world=2):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, HERE, str(r), str(world), str(tmp), mode, str(n)], env=env)
             for r in range(world)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    return [json.loads((tmp / f"out{r}.json").read_text()) for r in range(world)]


@pytest.mark.parametrize("n", [40, 37])
def test_distributed_store_equals_single_process(tmp_path, n):
    """Same rows, same order; bit for bit when both runs see the same batches
    (n = 40: shards of 20 in batches of 4), else to float32 rounding (the
    matrix products of a batch of 1 and of 4 may round differently)."""
    results = _run(tmp_path, "ok", n=n)
    assert all("error" not in r for r in results), results
    x, meta = simgap.load_embeddings(tmp_path / "store", verify=True)
    expected = simgap.Embedder(_model(), batch_size=4, progress=False)(_data(n))
    if n % 8 == 0:
        np.testing.assert_array_equal(np.asarray(x), expected)
    else:
        np.testing.assert_allclose(np.asarray(x), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(meta["id"], np.arange(n))
    assert not (tmp_path / "store.parts").exists()


def test_an_error_on_one_rank_is_raised_on_every_rank(tmp_path):
    results = _run(tmp_path, "fail")
    for r in results:
        assert "rank 1" in r.get("error", "") and "cannot embed" in r["error"], results


def test_resume_after_one_rank_failed(tmp_path):
    """Rank 0's part survives a failure of rank 1; resume=True embeds only what is missing."""
    failed = _run(tmp_path, "fail")
    assert all("rank 1" in r.get("error", "") for r in failed), failed
    assert (tmp_path / "store.parts" / "rank00000" / "manifest.json").exists()
    assert not (tmp_path / "store" / "manifest.json").exists()
    resumed = _run(tmp_path, "resume")
    assert all("error" not in r for r in resumed), resumed
    x, meta = simgap.load_embeddings(tmp_path / "store", verify=True)
    expected = simgap.Embedder(_model(), batch_size=4, progress=False)(_data(40))
    np.testing.assert_array_equal(np.asarray(x), expected)
    np.testing.assert_array_equal(meta["id"], np.arange(40))


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
