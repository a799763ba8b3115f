"""``simgap demo``: the whole loop on a built-in example, in about a minute on a laptop CPU.

Real data: scikit-learn's 1,797 bundled handwritten digits (8 × 8, values 0..16).  Synthetic data:
the procedural digit simulator of :mod:`simgap.digits`, started from a deliberately poor
configuration.  The loop:

1. render a synthetic training set with the default configuration;
2. train a small CNN on it and measure its accuracy on the real digits;
3. embed real and synthetic digits with that CNN's penultimate layer (:class:`simgap.Embedder`);
   this network then stays fixed: every gap of the loop is measured in its 64-d space, so
   "before" and "after" are comparable;
4. :func:`simgap.compare`: how large the gap is and where;
5. :func:`simgap.recommend` on an exploration set rendered across the whole parameter space,
   then a few closed-loop rounds of :class:`simgap.SimOptimizer` that move the recommended
   distribution to the best measured place;
6. render a new training set from the result, retrain, re-measure, and write the reports.

The real labels are used only to report accuracy; the loop itself sees the real digits unlabelled.

>>> from simgap.demo import run_demo
>>> result = run_demo(seed=0, out="simgap-demo", quick=True)   # doctest: +SKIP
>>> result.after["accuracy_real"] > result.before["accuracy_real"]   # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, TextIO

import numpy as np

from . import digits
from ._util.files import atomic_write_text
from .compare import compare
from .embedding import Embedder
from .kernels import median_bandwidth
from .mmd import mmd2
from .optimize import SimOptimizer
from .recommend import recommend
from .space import Float

__all__ = ["DemoResult", "DemoSettings", "digit_net", "run_demo", "train_classifier"]


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run (:data:`FULL` or :data:`QUICK`)."""

    n_train: int  # synthetic training digits per round
    epochs: int  # CNN training epochs
    n_explore: int  # exploration renders across the whole parameter space, for recommend()
    opt_rounds: int  # closed-loop rounds of SimOptimizer
    opt_batch: int  # configurations per round
    opt_samples: int  # digits rendered per configuration
    n_permutations: int  # compare(): permutation test
    n_bootstrap: int  # compare(): bootstrap interval
    kmm_iter: int  # recommend(): kernel-mean-matching iterations


FULL = DemoSettings(n_train=3000, epochs=8, n_explore=1500, opt_rounds=3, opt_batch=4,
                    opt_samples=400, n_permutations=500, n_bootstrap=100, kmm_iter=300)
QUICK = DemoSettings(n_train=1000, epochs=6, n_explore=600, opt_rounds=1, opt_batch=4,
                     opt_samples=200, n_permutations=100, n_bootstrap=50, kmm_iter=150)

EMBED_LAYER = "embed"


@dataclass
class DemoResult:
    """What :func:`run_demo` measured.

    ``before`` and ``after`` hold the same keys: ``mmd2`` (unbiased, gaussian kernel with one fixed
    bandwidth, the median heuristic of the real set, in the round-0 CNN's space), ``mmd2_final_space``
    (the same, re-embedded with the retrained CNN), ``swd``, ``fd``, ``c2st_auc``, ``precision``,
    ``recall``, ``density``, ``coverage``, ``p_value`` (from :func:`simgap.compare`, round-0 space),
    ``accuracy_real`` and ``accuracy_synthetic`` (of the CNN trained on that round's digits).
    """

    seed: int
    quick: bool
    before: dict
    after: dict
    default_config: dict
    final_config: dict
    files: list = field(default_factory=list)
    wall_s: float = 0.0
    threads: int = 1
    timings: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- the CNN


def digit_net():
    """A small CNN for 1 × 8 × 8 digits; its 64-d penultimate layer is the module ``"embed"``."""
    from torch import nn

    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 16, 3, padding=1)),
        ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(16, 32, 3, padding=1)),
        ("relu2", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(32 * 4 * 4, 64)),
        (EMBED_LAYER, nn.ReLU()),
        ("head", nn.Linear(64, 10)),
    ]))


def _inputs(images: np.ndarray) -> np.ndarray:
    """(n, 8, 8) values 0..16 -> (n, 1, 8, 8) float32 in [0, 1]."""
    return (np.asarray(images, dtype=np.float32) / 16.0)[:, None]


def train_classifier(images, labels, *, epochs: int = 8, seed: int = 0, batch_size: int = 128,
                     lr: float = 3e-3, progress: Any = None, desc: str = "train"):
    """Train :func:`digit_net` on (n, 8, 8) digits with Adam; seeded, returns the model in eval mode."""
    import torch
    from torch import nn
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    net = digit_net()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x = torch.from_numpy(_inputs(images))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    gen = torch.Generator().manual_seed(seed)
    net.train()
    bar = tqdm(range(epochs), desc=desc, unit="epoch", leave=False, disable=_disable(progress),
               file=sys.stderr)
    for _ in bar:
        perm = torch.randperm(x.shape[0], generator=gen)
        total = 0.0
        for i in range(0, x.shape[0], batch_size):
            b = perm[i : i + batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(x[b]), y[b])
            loss.backward()
            opt.step()
            total += loss.detach().item() * b.shape[0]
        bar.set_postfix(loss=f"{total / x.shape[0]:.3f}")
    bar.close()
    return net.eval()


def _accuracy(net, images, labels) -> float:
    import torch

    with torch.inference_mode():
        pred = net(torch.from_numpy(_inputs(images))).argmax(dim=1).numpy()
    return float(np.mean(pred == np.asarray(labels)))


def _disable(progress: Any) -> bool | None:
    """tqdm's ``disable``: None hides the bar when stderr is not a terminal."""
    return None if progress is None else not progress


# --------------------------------------------------------------------------- helpers of the loop


def _seeds(seed: int, k: int) -> list[int]:
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(k)]


def _recentred(offsets: dict, centre: dict) -> dict:
    """Per-sample parameters: the recommended spread (offsets from its median) around ``centre``."""
    out = {}
    for name, (low, high) in digits.PARAMETERS.items():
        out[name] = np.clip(centre[name] + offsets[name], low, high)
    return out


def _fmt_range(values: np.ndarray) -> str:
    lo, hi = np.quantile(values, [0.1, 0.9])
    return f"{lo:.2f}–{hi:.2f}"


def _metrics(report, mmd2_fixed: float, acc_real: float, acc_syn: float) -> dict:
    return {
        "mmd2": float(mmd2_fixed),
        "swd": float(report.swd),
        "fd": float(report.fd),
        "c2st_auc": float(report.c2st_auc),
        "precision": float(report.prdc["precision"]),
        "recall": float(report.prdc["recall"]),
        "density": float(report.prdc["density"]),
        "coverage": float(report.prdc["coverage"]),
        "p_value": float(report.p_value),
        "accuracy_real": float(acc_real),
        "accuracy_synthetic": float(acc_syn),
    }


_TABLE_ROWS = [
    ("mmd2", "MMD² (round-0 CNN space)", "{:.4f}", "lower"),
    ("mmd2_final_space", "MMD² (retrained CNN space)", "{:.4f}", "lower"),
    ("swd", "sliced Wasserstein-2", "{:.3f}", "lower"),
    ("fd", "Fréchet distance", "{:.1f}", "lower"),
    ("c2st_auc", "C2ST AUC (0.5 = indistinguishable)", "{:.3f}", "lower"),
    ("precision", "precision", "{:.3f}", "higher"),
    ("recall", "recall", "{:.3f}", "higher"),
    ("coverage", "coverage", "{:.3f}", "higher"),
    ("accuracy_real", "CNN accuracy on real digits", "{:.1%}", "higher"),
]


def format_table(before: dict, after: dict) -> str:
    """The before/after table as plain text."""
    w = max(len(label) for _, label, _, _ in _TABLE_ROWS)
    lines = [f"{'':{w}}  {'before':>9}  {'after':>9}", f"{'-' * w}  {'-' * 9}  {'-' * 9}"]
    for key, label, fmt, _ in _TABLE_ROWS:
        lines.append(f"{label:{w}}  {fmt.format(before[key]):>9}  {fmt.format(after[key]):>9}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the steps


class _Seeds(NamedTuple):
    """One seed per random step, spawned from the demo's seed."""

    render0: int
    train0: int
    explore: int
    rec: int
    opt: int
    offsets: int
    render1: int
    train1: int
    compare: int


class _Log:
    """The step-by-step log (printed when ``verbose``) and the wall time of each step."""

    def __init__(self, verbose: bool, stream: TextIO) -> None:
        self.verbose, self.stream = verbose, stream
        self.timings: dict[str, float] = {}
        self.clock = time.perf_counter()

    def say(self, msg: str = "") -> None:
        if self.verbose:
            print(msg, file=self.stream, flush=True)

    def lap(self, step: str) -> None:
        """Add the time since the last lap to ``step``."""
        now = time.perf_counter()
        self.timings[step] = self.timings.get(step, 0.0) + (now - self.clock)
        self.clock = now


def _first_round(cfg: DemoSettings, seeds: _Seeds, real, real_labels, progress: Any, log: _Log):
    """Steps 1 and 2: render with the default configuration and train on it;
    returns (images, labels, params, net, accuracy on real, accuracy on synthetic)."""
    log.say(f"\n[1/6] render {cfg.n_train:,} synthetic digits with the default, deliberately poor, "
            "configuration")
    x0, y0, p0 = digits.make_digits(cfg.n_train, digits.DEFAULT_CONFIG, seed=seeds.render0)
    log.say("      " + ", ".join(f"{k} {lo:g}–{hi:g}" for k, (lo, hi) in digits.DEFAULT_CONFIG.items()))
    log.lap("render")

    log.say(f"[2/6] train a small CNN on them ({cfg.epochs} epochs)")
    net0 = train_classifier(x0, y0, epochs=cfg.epochs, seed=seeds.train0, progress=progress,
                            desc="train (round 0)")
    acc0_real, acc0_syn = _accuracy(net0, real, real_labels), _accuracy(net0, x0, y0)
    log.lap("train")
    log.say(f"      accuracy: {acc0_syn:.1%} on its synthetic digits, {acc0_real:.1%} on the real ones")
    return x0, y0, p0, net0, acc0_real, acc0_syn


def _fixed_space(net0, real, x0, seeds: _Seeds, log: _Log):
    """Step 3: the embedding with the round-0 CNN's penultimate layer, fixed from here on;
    returns (embed, real embeddings, round-0 synthetic embeddings, sigma)."""
    embedder = Embedder(net0, layer=EMBED_LAYER, batch_size=1024)

    def embed(images):
        return embedder(_inputs(images), progress=False)

    real_e = embed(real)
    syn0_e = embed(x0)
    sigma = median_bandwidth(real_e, seed=seeds.compare)
    log.lap("embed")
    log.say(f"[3/6] embed real and synthetic with the CNN's penultimate layer ({real_e.shape[1]}-d)")
    log.say("      this network stays fixed: every gap below is measured in the same space (MMD²: "
            f"gaussian kernel, σ = {sigma:.3g}, the median heuristic of the real set)")
    return embed, real_e, syn0_e, sigma


def _measure(real_e, syn_e, params, labels, cfg: DemoSettings, seeds: _Seeds, sigma: float,
             acc_real: float, acc_syn: float):
    """:func:`simgap.compare` and the fixed-bandwidth MMD² of one round: (report, metrics)."""
    rep = compare(real_e, syn_e, params=params, labels=labels, n_permutations=cfg.n_permutations,
                  n_bootstrap=cfg.n_bootstrap, map_method="pca", seed=seeds.compare)
    return rep, _metrics(rep, mmd2(real_e, syn_e, bandwidth=sigma), acc_real, acc_syn)


def _recommend(real_e, embed, cfg: DemoSettings, seeds: _Seeds, log: _Log):
    """Step 5a: :func:`simgap.recommend` on an exploration set rendered across the whole space."""
    log.say(f"[5/6] recommend: render {cfg.n_explore:,} digits across the whole parameter space and "
            "weight them to match")
    log.say("      the real digits in latent space (kernel mean matching)")
    xe, _, pe = digits.make_digits(cfg.n_explore, digits.PARAMETERS, seed=seeds.explore)
    explore_e = embed(xe)
    log.lap("render")
    space = {k: Float(lo, hi) for k, (lo, hi) in digits.PARAMETERS.items()}
    rec = recommend(real_e, explore_e, pe, space=space, max_iter=cfg.kmm_iter, seed=seeds.rec)
    log.lap("recommend")
    log.say("      " + rec.summary().replace("\n", "\n      "))
    return rec


def _closed_loop(rec, rec_median: dict, real_e, embed, sigma: float, cfg: DemoSettings, seeds: _Seeds,
                 progress: Any, log: _Log) -> dict:
    """Step 5b: :class:`simgap.SimOptimizer` rounds; returns the best centre.

    The closed loop moves the recommended distribution (its spread kept, as offsets from its
    median) to the centre that renders closest to the real digits, searching the
    recommended ranges.  Every configuration is rendered with the same offsets and seed
    (common random numbers), so the rounds compare configurations, not noise.
    """
    from tqdm.auto import tqdm

    offsets_tbl = rec.sample(cfg.opt_samples, seed=seeds.offsets)
    offsets = {k: offsets_tbl[k].to_numpy() - rec_median[k] for k in digits.PARAMETERS}
    opt_space = {k: Float(float(p.low), float(p.high)) for k, p in rec.parameters.items()}
    opt_labels = np.arange(cfg.opt_samples) % 10

    def simulate(centre):
        images = digits.render_digits(opt_labels, _recentred(offsets, centre), seed=seeds.opt)
        return embed(images)

    opt = SimOptimizer(opt_space, real_e, strategy="tpe", batch_size=cfg.opt_batch, seed=seeds.opt,
                       bandwidth=sigma)
    start_gap = float(opt.tell([rec_median], [simulate(rec_median)])[0])
    log.say(f"      closed loop (SimOptimizer, TPE): {cfg.opt_rounds} round(s) × {cfg.opt_batch} "
            f"configurations × {cfg.opt_samples} digits; recommended centre: MMD² {start_gap:.4f}")
    bar = tqdm(range(cfg.opt_rounds), desc="closed loop", unit="round", leave=False,
               disable=_disable(progress), file=sys.stderr)
    for r in bar:
        asked = opt.ask()
        values = opt.tell(asked, [simulate(c) for c in asked])
        log.say(f"      round {r + 1}: MMD² " + " ".join(f"{v:.4f}" for v in values)
                + f"   best so far {opt.best_mmd2:.4f}")
    bar.close()
    centre = opt.best_config
    log.lap("closed loop")
    return centre


def _final_round(rec, rec_median: dict, centre: dict, cfg: DemoSettings, seeds: _Seeds, real, real_labels,
                 progress: Any, log: _Log):
    """Step 6a: render from the result (the recommended spread around ``centre``) and retrain;
    returns (images, labels, params, net, accuracy on real, accuracy on synthetic)."""
    log.say(f"[6/6] render {cfg.n_train:,} digits from the new configuration, retrain, re-measure")
    offsets_tbl = rec.sample(cfg.n_train, seed=seeds.offsets + 1)
    final_offsets = {k: offsets_tbl[k].to_numpy() - rec_median[k] for k in digits.PARAMETERS}
    p1 = _recentred(final_offsets, centre)
    x1, y1, p1 = digits.make_digits(cfg.n_train, params=p1, seed=seeds.render1)
    log.lap("render")
    log.say("      " + ", ".join(f"{k} {_fmt_range(v)}" for k, v in p1.items()) + "  (10–90 %)")
    net1 = train_classifier(x1, y1, epochs=cfg.epochs, seed=seeds.train1, progress=progress,
                            desc="train (final)")
    acc1_real, acc1_syn = _accuracy(net1, real, real_labels), _accuracy(net1, x1, y1)
    log.lap("train")
    return x1, y1, p1, net1, acc1_real, acc1_syn


def _final_space_gaps(net1, real, x0, x1, seeds: _Seeds) -> tuple[float, float]:
    """MMD² of both rounds re-embedded with the retrained network (its own median
    bandwidth), as a check that the gap closed in more than one space."""
    embedder1 = Embedder(net1, layer=EMBED_LAYER, batch_size=1024)
    real_f = embedder1(_inputs(real), progress=False)
    sigma_f = median_bandwidth(real_f, seed=seeds.compare)
    before = float(mmd2(real_f, embedder1(_inputs(x0), progress=False), bandwidth=sigma_f))
    after = float(mmd2(real_f, embedder1(_inputs(x1), progress=False), bandwidth=sigma_f))
    return before, after


def _write_reports(out: str, rep0, rep1, real, x0, x1, p1: dict, y1) -> list[str]:
    """The HTML and JSON reports of both rounds and the final configurations (``configs.csv``)."""
    import pandas as pd

    files = []
    images0 = (real / 16.0, x0 / 16.0)
    images1 = (real / 16.0, x1 / 16.0)
    for name, rep, images in (("report-before", rep0, images0), ("report", rep1, images1)):
        rep.to_html(os.path.join(out, name + ".html"), images=images,
                    title=f"simgap demo: digits {'before' if name != 'report' else 'after'} the loop")
        rep.to_json(os.path.join(out, name + ".json"))
        files += [os.path.join(out, name + ".html"), os.path.join(out, name + ".json")]
    csv_path = os.path.join(out, "configs.csv")
    atomic_write_text(csv_path, pd.DataFrame(p1).assign(label=y1).to_csv(index=False))
    files.append(csv_path)
    return files


# --------------------------------------------------------------------------- the loop


def run_demo(*, seed: int = 0, out: Any = "simgap-demo", quick: bool = False,
             threads: int = 1, progress: Any = None, file: TextIO | None = None,
             verbose: bool = True) -> DemoResult:
    """Run the demo loop and write its reports to ``out``.

    Parameters
    ----------
    seed : int, default 0
        Seeds every random step (rendering, training, exploration, optimiser, reports): one seed,
        one result on a given machine and thread count.
    out : str or os.PathLike, default "simgap-demo"
        Folder for ``report.html`` / ``report.json`` (the gap after the loop),
        ``report-before.html`` / ``report-before.json``, ``configs.csv`` (the final per-sample
        configurations) and ``summary.json`` (the before/after table); created if needed.  Files
        are written atomically.
    quick : bool, default False
        A smaller run (about a third of the samples and rounds), used by the tests.
    threads : int, default 1
        torch threads for the CNN.  One is the fastest for this tiny network: on a 2-core machine
        two threads made its training 6 to 30 times slower whenever anything else was running
        (thread synchronisation dominates 8 × 8 convolutions).  The C++ kernels and
        scikit-learn use the cores as usual.  Results are reproducible for a given thread count.
    progress : bool or None, default None
        Progress bars on stderr: None shows them when stderr is a terminal.
    file : text file, optional
        Where the step-by-step log goes (default ``sys.stdout``).
    verbose : bool, default True
        Print the log (False: silent, results only).

    Returns
    -------
    DemoResult
    """
    import torch

    t_start = time.perf_counter()
    cfg = QUICK if quick else FULL
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    log = _Log(verbose, sys.stdout if file is None else file)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    seeds = _Seeds(*_seeds(seed, 9))
    try:
        real, real_labels = digits.load_real_digits()
        log.say(f"simgap demo (seed {seed}{', quick' if quick else ''}; {threads} torch thread(s) for the CNN; "
                f"output in {out}/)")
        log.say(f"real data: scikit-learn's {real.shape[0]:,} handwritten digits, 8×8, values 0..16; "
                "their labels are used only to score the classifiers")

        # 1-3. the default configuration, a CNN trained on it, and its (fixed) latent space
        x0, y0, p0, net0, acc0_real, acc0_syn = _first_round(cfg, seeds, real, real_labels, progress, log)
        embed, real_e, syn0_e, sigma = _fixed_space(net0, real, x0, seeds, log)

        # 4. compare
        log.say("[4/6] compare: how large is the gap, and where?")
        rep0, before = _measure(real_e, syn0_e, p0, (real_labels, y0), cfg, seeds, sigma, acc0_real, acc0_syn)
        log.lap("compare")
        if verbose:
            rep0.summary(file=log.stream)

        # 5. recommend from an exploration round, then refine in a closed loop
        rec = _recommend(real_e, embed, cfg, seeds, log)
        rec_median = {k: float(p.value) for k, p in rec.parameters.items()}
        centre = _closed_loop(rec, rec_median, real_e, embed, sigma, cfg, seeds, progress, log)

        # 6. render from the result, retrain, re-measure
        x1, y1, p1, net1, acc1_real, acc1_syn = _final_round(rec, rec_median, centre, cfg, seeds, real,
                                                             real_labels, progress, log)
        syn1_e = embed(x1)
        rep1, after = _measure(real_e, syn1_e, p1, (real_labels, y1), cfg, seeds, sigma, acc1_real, acc1_syn)
        log.lap("compare")
        before["mmd2_final_space"], after["mmd2_final_space"] = _final_space_gaps(net1, real, x0, x1, seeds)
        log.lap("embed")

        log.say("\nbefore → after (gaps between the real digits and each round's synthetic digits;")
        log.say("MMD² with the fixed σ above, sliced W2, Fréchet, C2ST and PRDC in the fixed space of")
        log.say("the round-0 CNN; the second MMD² row re-embeds both rounds with the retrained CNN)")
        log.say(format_table(before, after))

        files = _write_reports(out, rep0, rep1, real, x0, x1, p1, y1)
        log.lap("reports")
        wall = time.perf_counter() - t_start
        result = DemoResult(
            seed=seed, quick=quick, before=before, after=after,
            default_config={k: list(v) for k, v in digits.DEFAULT_CONFIG.items()},
            final_config={k: float(v) for k, v in centre.items()},
            files=files, wall_s=wall, threads=int(threads), timings=log.timings, settings=asdict(cfg),
        )
        summary_path = os.path.join(out, "summary.json")
        result.files.append(summary_path)
        atomic_write_text(summary_path, json.dumps(result.to_dict(), indent=1) + "\n")
        log.say("\nwritten: " + ", ".join(result.files))
        log.say(f"done in {wall:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in log.timings.items()) + ")")
        return result
    finally:
        torch.set_num_threads(prev_threads)
