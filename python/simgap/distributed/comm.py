"""The communication layer of :mod:`simgap.distributed`.

:class:`Comm` wraps the caller's process group and the few collectives the
sharded statistics use; :func:`agree` runs every rank's local checks and
exchanges their outcome, so that an invalid input or option on one rank makes
every rank raise.  :func:`seed_option` and :func:`seed_draw` make a seed part
of the options every rank agrees on and draw the number all ranks share.
Importing this module does not import torch.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .._util.arrays import is_tensor

__all__ = ["Comm", "Pending", "agree", "canonical", "last_traffic", "seed_draw", "seed_option"]

# Payload bytes this process sent / received in the last call (for the benchmarks).
last_traffic: dict[str, int] = {"sent": 0, "received": 0}


class Comm:
    """The process group, the transport device and the few collectives used here."""

    def __init__(self, group: Any) -> None:
        import torch
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "torch.distributed is not initialised: call torch.distributed.init_process_group "
                "(for example under torchrun) before the functions of simgap.distributed"
            )
        self.torch, self.dist, self.group = torch, dist, group
        self.rank = dist.get_rank(group)
        if self.rank < 0:
            raise RuntimeError("this process is not a member of the given process group")
        self.world = dist.get_world_size(group)
        backend = str(dist.get_backend(group)).lower()
        self.device = torch.device("cuda", torch.cuda.current_device()) if "nccl" in backend else torch.device("cpu")
        last_traffic["sent"] = last_traffic["received"] = 0
        if backend == "gloo" and self.world > 1:
            # Its default timeout is torch's 30 minutes, not the group's: pass the group's.
            dist.monitored_barrier(group=group, timeout=self._timeout(), wait_all_ranks=True)

    def _timeout(self):
        """The timeout the group was created with (None: torch's default)."""
        try:
            pg = self.group if self.group is not None else self.dist.group.WORLD
            return pg._get_backend(self.torch.device("cpu")).options._timeout
        except Exception:  # private API: without it the barrier uses torch's default
            return None

    def _peer(self, r: int) -> int:
        r %= self.world
        if self.group is None:
            return r
        return self.dist.get_global_rank(self.group, r)

    def count_traffic(self, sent: int, received: int) -> None:
        """Add payload bytes to :data:`last_traffic`."""
        last_traffic["sent"] += int(sent)
        last_traffic["received"] += int(received)

    def _tensor(self, arr: np.ndarray):
        t = self.torch.from_numpy(np.require(arr, requirements=["C", "W"]))
        return t if self.device.type == "cpu" else t.to(self.device)

    def objects(self, obj: Any) -> list:
        out: list = [None] * self.world
        self.dist.all_gather_object(out, obj, group=self.group)
        return out

    def gather_rows(self, local: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
        """All-gather 2-D (or 1-D) arrays whose row counts are known to every rank."""
        width = local.shape[1:]
        top = max(1, max(counts))
        buf = np.zeros((top,) + width, dtype=local.dtype)
        buf[: local.shape[0]] = local
        send = self._tensor(buf)
        outs = [self.torch.empty_like(send) for _ in range(self.world)]
        self.dist.all_gather(outs, send, group=self.group)
        self.count_traffic(buf.nbytes * (self.world - 1), buf.nbytes * (self.world - 1))
        return [o.cpu().numpy()[:c] for o, c in zip(outs, counts)]

    def sum_ranks(self, vec: np.ndarray) -> np.ndarray:
        """The sum over ranks of a float64 vector, added in rank order (the same bits everywhere)."""
        parts = self.gather_rows(np.asarray(vec, dtype=np.float64).reshape(1, -1), [1] * self.world)
        total = np.zeros(vec.shape[0] if vec.ndim else 1)
        for p in parts:
            total = total + p[0]
        return total

    def shift(self, buf: Any, recv_nbytes: int) -> "Pending":
        """Send buf to rank + 1 and receive recv_nbytes bytes from rank - 1 (both never empty).

        buf is a uint8 NumPy array, or a uint8 torch tensor already on the
        transport device (the device-resident ring), which is then what the
        receive gives back."""
        if is_tensor(buf):
            st = buf
            rt, recv = self.torch.empty(recv_nbytes, dtype=self.torch.uint8, device=buf.device), None
        else:
            recv = np.empty(recv_nbytes, dtype=np.uint8)
            st, rt = self._tensor(buf), self._tensor(recv)
        ops = [self.dist.P2POp(self.dist.isend, st, self._peer(self.rank + 1), self.group),
               self.dist.P2POp(self.dist.irecv, rt, self._peer(self.rank - 1), self.group)]
        works = self.dist.batch_isend_irecv(ops)
        self.count_traffic(buf.nbytes, recv_nbytes)
        return Pending(works, st, rt, recv)

    def all_to_all(self, send: Any, send_counts: list[int], recv_counts: list[int]) -> Any:
        """1-D all-to-all with uneven splits (counts in elements).

        send is a NumPy array, or a torch tensor already on the transport
        device (the device-resident path), which is then what comes back."""
        if is_tensor(send):
            st = send
            rt = recv = self.torch.empty(sum(recv_counts), dtype=send.dtype, device=send.device)
        else:
            recv = np.empty(sum(recv_counts), dtype=send.dtype)
            st, rt = self._tensor(send), self._tensor(recv)
        self.dist.all_to_all_single(rt, st, recv_counts, send_counts, group=self.group)
        own = send_counts[self.rank] * send.itemsize
        self.count_traffic(send.nbytes - own, recv.nbytes - own)
        if is_tensor(recv) or self.device.type == "cpu":
            return recv
        return rt.cpu().numpy()


class Pending:
    """A send and a receive in flight (:meth:`Comm.shift`); :meth:`wait` gives the received bytes."""

    def __init__(self, works, send_t, recv_t, recv_np):
        self.works, self.send_t, self.recv_t, self.recv_np = works, send_t, recv_t, recv_np

    def wait(self) -> Any:
        for w in self.works:
            w.wait()
        if self.recv_np is None:  # the device-resident ring keeps the tensor
            return self.recv_t
        if self.recv_t.device.type != "cpu":
            return self.recv_t.cpu().numpy()
        return self.recv_np


def canonical(value: Any) -> Any:
    """``value`` with arrays and NumPy scalars as exact Python values, so that
    repr() tells every difference (an array's repr rounds to 8 digits)."""
    if isinstance(value, np.ndarray):
        return ("ndarray", value.shape, tuple(value.ravel().tolist()))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(canonical(v) for v in value)
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    return value


def agree(comm: Comm, fn: Callable[[], tuple[Any, dict]], options: Any) -> tuple[Any, list[dict]]:
    """Run the local validation fn on every rank and exchange its summary.

    fn returns (local data, summary dict).  If any rank raised, every rank
    raises: the failing rank its own exception, the others one of the same
    kind naming that rank.  Options that differ between ranks are an error.
    """
    try:
        local, meta = fn()
        err = None
    except Exception as exc:  # every rank must learn about it: no early raise
        local, meta, err = None, {}, exc
    meta = dict(meta, error=None if err is None else (type(err).__name__, str(err)),
                options=repr(canonical(options)))
    metas = comm.objects(meta)
    for k, mt in enumerate(metas):
        if mt["error"] is not None:
            if err is not None:
                raise err
            kind = {"ValueError": ValueError, "TypeError": TypeError,
                    "NotImplementedError": NotImplementedError}.get(mt["error"][0], RuntimeError)
            raise kind(f"rank {k}: {mt['error'][0]}: {mt['error'][1]}")
    if len({mt["options"] for mt in metas}) > 1:
        listing = "; ".join(f"rank {k}: {mt['options']}" for k, mt in enumerate(metas))
        raise ValueError(f"the ranks were called with different options ({listing}); pass the same ones on every rank")
    for key in ("d", "hash"):
        values = [mt[key] for mt in metas if key in mt]
        if len(set(values)) > 1:
            what = "number of features" if key == "d" else "projections"
            raise ValueError(f"the ranks disagree on the {what}: " + ", ".join(
                f"rank {k}: {mt[key]}" for k, mt in enumerate(metas)))
    return local, metas


def seed_option(seed: Any) -> str:
    """How a seed takes part in the options every rank must agree on."""
    if seed is None:
        return "None"
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return repr(int(seed))
    return f"<{type(seed).__name__}>"


def seed_draw(seed: Any, name: str = "seed") -> int:
    """This rank's integer seed: ``seed`` itself, or a fresh draw for None (every
    rank then uses rank 0's draw: all must draw the same relabellings or
    directions).  Generators cannot be shared between processes."""
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be a non-negative integer or None in simgap.distributed (every rank "
                         f"draws the same random numbers from it); got {seed!r}")
    return int(seed)
