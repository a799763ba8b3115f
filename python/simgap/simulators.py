"""Benchmark simulators with known true parameters, for testing and measuring
:func:`simgap.recommend` and :class:`simgap.SimOptimizer`.

Each simulator has a :attr:`space`, the true parameters :attr:`true_params`
(theta*), renders samples for any configuration (:meth:`simulate`,
:meth:`simulate_table`), and renders the "real" set at theta* **plus a nuisance
that no configuration can reproduce**, so the best reachable gap is positive,
as with real data.

``GaussianMixtureSimulator``
    Points in R^dim from a two-component mixture: component a centred at
    ``mean_a * e1``, component b at ``mean_b * e2``, a common ``scale``, the
    probability ``weight`` of component a, and the noise family ``noise``
    ("gaussian" or "student", a unit-variance Student t with 3 degrees of
    freedom).  Nuisance: a fraction of the real points form a cluster at
    ``6 e3`` (a direction no configuration uses).  Samples are their own latents
    (:attr:`embed` is None).

``ShapesSimulator``
    16 x 16 grey images of one soft-edged shape ("ellipse" with axes
    (radius, radius / 2) or "rectangle" with half-sides (radius, radius / 2)) at
    a random position, with ``radius``, edge ``blur``, ``contrast`` and
    ``rotation`` (degrees).  Nuisance: pixel noise and a bright horizontal
    scratch on a fraction of the real images.  :attr:`embed` is a small
    convolutional network, randomly initialised from its seed (its 32-feature
    penultimate layer).

>>> from simgap.simulators import GaussianMixtureSimulator
>>> sim = GaussianMixtureSimulator()
>>> sim.true_params["mean_a"], sim.simulate(sim.true_params, 5, seed=0).shape
(1.5, (5, 4))
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

import numpy as np

from ._util.checks import as_positive_int
from .space import Categorical, Float, as_space, as_table, check_table, sample_space

__all__ = ["GaussianMixtureSimulator", "ShapesSimulator"]


def _nuisance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= float(value) < 1:
        raise ValueError(f"nuisance must be a number in [0, 1), got {value!r}")
    return float(value)


class _Simulator:
    space: dict
    true_params: dict
    embed: Any = None

    def _table(self, table: Any) -> dict[str, np.ndarray]:
        if isinstance(table, Mapping) and all(np.ndim(v) == 0 for v in table.values()):
            table = [dict(table)]
        return check_table(as_table(table, "table"), self.space, "table", "space")

    def _check_space(self, defaults: Mapping[str, Any]) -> None:
        """The space must name exactly the parameters the renderer reads."""
        missing = sorted(set(defaults) - set(self.space))
        extra = sorted(set(self.space) - set(defaults))
        if missing or extra:
            raise ValueError(f"space must declare exactly the parameters {sorted(defaults)} of "
                             f"{type(self).__name__}; missing {missing}, unknown {extra}")


    def simulate(self, config: Mapping[str, Any], n: int, *, seed: Any = 0) -> np.ndarray:
        """``n`` samples rendered with one configuration (a dict name -> value)."""
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a dict from parameter name to value, got {type(config).__name__}")
        n = as_positive_int(n, "n")
        cols = self._table([dict(config)])
        return self._render({k: np.repeat(v, n) for k, v in cols.items()}, np.random.default_rng(seed))

    def simulate_table(self, table: Any, *, seed: Any = 0) -> np.ndarray:
        """One sample per row of a parameter table (DataFrame, dict of columns, list of dicts)."""
        return self._render(self._table(table), np.random.default_rng(seed))

    def latent(self, samples: Any) -> np.ndarray:
        """Samples -> latent vectors (``embed`` when there is one)."""
        return np.asarray(samples if self.embed is None else self.embed(samples))

    def design(self, n_configs: int, samples_per_config: int = 1, *, seed: Any = 0, space: Any = None):
        """A first generation round: ``n_configs`` configurations drawn uniformly
        from ``space`` (default :attr:`space`), each rendered ``samples_per_config`` times.

        Returns
        -------
        params : pandas.DataFrame, shape (n_configs * samples_per_config, n_params)
            One row per sample (rows of a configuration are consecutive).
        latents : ndarray, shape (n_configs * samples_per_config, d)
        """
        n_configs = as_positive_int(n_configs, "n_configs")
        r = as_positive_int(samples_per_config, "samples_per_config")
        ss = np.random.SeedSequence(seed).spawn(2)
        table = sample_space(self.space if space is None else as_space(space), n_configs,
                             seed=int(ss[0].generate_state(1)[0]))
        rows = table.loc[table.index.repeat(r)].reset_index(drop=True)
        return rows, self.latent(self.simulate_table(rows, seed=int(ss[1].generate_state(1)[0])))


class GaussianMixtureSimulator(_Simulator):
    """Two-component Gaussian-mixture generator in R^dim (see the module docstring).

    Parameters
    ----------
    dim : int, default 4
        Dimension of the samples (>= 3: e1, e2 for the components, e3 for the nuisance).
    nuisance : float, default 0.1
        Fraction of real points in the cluster at ``6 e3`` that no configuration renders.
    true_params : dict, optional
        theta*; default ``{"mean_a": 1.5, "mean_b": -1.0, "scale": 0.5,
        "weight": 0.3, "noise": "gaussian"}``.
    space : dict, optional
        Default: mean_a, mean_b in [-3, 3]; scale in [0.2, 2] (log); weight in
        [0.05, 0.95]; noise in {"gaussian", "student"}.

    Examples
    --------
    >>> from simgap.simulators import GaussianMixtureSimulator
    >>> sim = GaussianMixtureSimulator(nuisance=0.0)
    >>> x = sim.simulate({"mean_a": 2.0, "mean_b": 0.0, "scale": 0.2, "weight": 0.95,
    ...                   "noise": "gaussian"}, 1000, seed=0)
    >>> round(float(x[:, 0].mean()), 1)  # 0.95 * 2.0
    1.9
    """

    def __init__(self, *, dim: int = 4, nuisance: float = 0.1, true_params: Mapping | None = None,
                 space: Any = None):
        self.dim = as_positive_int(dim, "dim", minimum=3)
        self.nuisance = _nuisance(nuisance)
        self.space = as_space(space if space is not None else {
            "mean_a": Float(-3.0, 3.0),
            "mean_b": Float(-3.0, 3.0),
            "scale": Float(0.2, 2.0, log=True),
            "weight": Float(0.05, 0.95),
            "noise": Categorical(["gaussian", "student"]),
        })
        self.true_params = dict(true_params) if true_params is not None else {
            "mean_a": 1.5, "mean_b": -1.0, "scale": 0.5, "weight": 0.3, "noise": "gaussian"}
        self._check_space({"mean_a", "mean_b", "scale", "weight", "noise"})
        self.embed = None

    def _render(self, cols: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        n = next(iter(cols.values())).shape[0]
        weight = np.clip(cols["weight"].astype(np.float64), 0.0, 1.0)
        comp_a = rng.random(n) < weight
        x = np.zeros((n, self.dim))
        x[comp_a, 0] = cols["mean_a"][comp_a]
        x[~comp_a, 1] = cols["mean_b"][~comp_a]
        z = rng.standard_normal((n, self.dim))
        student = np.asarray([v == "student" for v in cols["noise"].tolist()])
        if student.any():  # unit-variance t(3): N / sqrt(chi2_3 / 3) / sqrt(3)
            chi = rng.chisquare(3, size=(int(student.sum()), 1))
            z[student] = z[student] / np.sqrt(chi / 3.0) / math.sqrt(3.0)
        return x + cols["scale"][:, None] * z

    def real(self, n: int, *, seed: Any = 0) -> np.ndarray:
        """``n`` real points: theta* plus the nuisance cluster at ``6 e3`` (std 0.3)."""
        n = as_positive_int(n, "n")
        rng = np.random.default_rng(seed)
        x = self.simulate(self.true_params, n, seed=int(rng.integers(2**31)))
        k = int(round(self.nuisance * n))
        if k:
            idx = rng.choice(n, size=k, replace=False)
            x[idx] = 0.3 * rng.standard_normal((k, self.dim))
            x[idx, 2] += 6.0
        return x


class ShapesSimulator(_Simulator):
    """Procedural 16 x 16 shapes embedded by a small seeded CNN (see the module docstring).

    Parameters
    ----------
    size : int, default 16
        Image side in pixels.
    nuisance : float, default 0.15
        Fraction of real images with a bright horizontal scratch (all real images
        also get pixel noise of std 0.03).
    true_params : dict, optional
        Default ``{"radius": 3.5, "blur": 0.8, "contrast": 0.7, "rotation": 30.0,
        "shape": "ellipse"}``.
    embed_dim : int, default 32
        Features of the embedding network's penultimate layer.
    seed : int, default 0
        Seed of the embedding network's weights.

    Examples
    --------
    >>> from simgap.simulators import ShapesSimulator
    >>> sim = ShapesSimulator()
    >>> images = sim.simulate(sim.true_params, 3, seed=0)
    >>> images.shape, sim.embed(images).shape
    ((3, 16, 16), (3, 32))
    """

    def __init__(self, *, size: int = 16, nuisance: float = 0.15, true_params: Mapping | None = None,
                 embed_dim: int = 32, space: Any = None, seed: Any = 0):
        self.size = as_positive_int(size, "size", minimum=8)
        self.nuisance = _nuisance(nuisance)
        self.space = as_space(space if space is not None else {
            "radius": Float(1.5, 6.0),
            "blur": Float(0.0, 2.0),
            "contrast": Float(0.2, 1.0),
            "rotation": Float(0.0, 90.0),
            "shape": Categorical(["ellipse", "rectangle"]),
        })
        self.true_params = dict(true_params) if true_params is not None else {
            "radius": 3.5, "blur": 0.8, "contrast": 0.7, "rotation": 30.0, "shape": "ellipse"}
        self._check_space({"radius", "blur", "contrast", "rotation", "shape"})
        radius = self.space["radius"]
        if not isinstance(radius, Float) or radius.low <= 0:
            raise ValueError(f"space['radius'] must be a Float with low > 0 (a radius of 0 renders NaN); got {radius}")
        self.embed_dim = as_positive_int(embed_dim, "embed_dim")
        self._net = _make_cnn(self.size, self.embed_dim, seed)
        self.embed = self._embed

    def _render(self, cols: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        n = next(iter(cols.values())).shape[0]
        s = self.size
        c = (s - 1) / 2.0 + rng.uniform(-2.0, 2.0, size=(n, 2))
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
        dx = xx[None] - c[:, 0, None, None]
        dy = yy[None] - c[:, 1, None, None]
        th = np.deg2rad(cols["rotation"].astype(np.float64))[:, None, None]
        u = np.cos(th) * dx + np.sin(th) * dy
        v = -np.sin(th) * dx + np.cos(th) * dy
        a = cols["radius"].astype(np.float64)[:, None, None]
        b = 0.5 * a
        rect = np.asarray([v_ == "rectangle" for v_ in cols["shape"].tolist()])[:, None, None]
        rho = np.where(rect, np.maximum(np.abs(u) / a, np.abs(v) / b), np.sqrt((u / a) ** 2 + (v / b) ** 2))
        soft = 0.25 + cols["blur"].astype(np.float64)[:, None, None]
        img = cols["contrast"].astype(np.float64)[:, None, None] / (1.0 + np.exp(-(1.0 - rho) * b / soft))
        return img.astype(np.float32)

    def real(self, n: int, *, seed: Any = 0) -> np.ndarray:
        """``n`` real images: theta* plus pixel noise (std 0.03) and a scratch on a fraction."""
        n = as_positive_int(n, "n")
        rng = np.random.default_rng(seed)
        img = self.simulate(self.true_params, n, seed=int(rng.integers(2**31)))
        img = img + 0.03 * rng.standard_normal(img.shape).astype(np.float32)
        k = int(round(self.nuisance * n))
        if k:
            idx = rng.choice(n, size=k, replace=False)
            rows = rng.integers(2, self.size - 2, size=k)
            img[idx, rows, :] = 1.0
        return img

    def _embed(self, images: Any) -> np.ndarray:
        """Images (n, size, size) -> features (n, embed_dim), float32."""
        import torch

        arr = np.asarray(images, dtype=np.float32)
        if arr.ndim != 3 or arr.shape[1:] != (self.size, self.size):
            raise ValueError(f"images must have shape (n, {self.size}, {self.size}); got {arr.shape}")
        with torch.no_grad():
            out = self._net(torch.from_numpy(np.ascontiguousarray(arr))[:, None])
        return out.numpy()


def _make_cnn(size: int, embed_dim: int, seed: Any):
    """conv(1->8) - ReLU - avgpool - conv(8->16) - ReLU - avgpool - linear(-> embed_dim):
    a classifier's trunk without its head, weights drawn from ``seed``."""
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
        net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(16 * (size // 4) ** 2, embed_dim),
        )
    net.eval()
    return net
