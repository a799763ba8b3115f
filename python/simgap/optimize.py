"""Closed-loop search for simulator configurations that close the latent gap:
:class:`SimOptimizer`, an ask/tell loop over Optuna's samplers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import numbers
import os
import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ._ops.backend import device_of
from ._util.arrays import to_host
from ._ops.inputs import as_matrix, check_same_features
from ._util.checks import as_positive_int
from .kernels import KERNELS, median_bandwidth
from .mmd import mmd2_batch
from .space import Categorical, Float, Int, as_space, space_frame, space_to_dict

__all__ = ["SimOptimizer"]

_STRATEGIES = ("tpe", "gp", "cmaes", "random")
_PENDING = ("reask", "fail")
_ATTR = "simgap"


@contextlib.contextmanager
def _quiet(verbose: bool):
    """Optuna's INFO logging and ExperimentalWarning off for the duration (restored after)."""
    import optuna

    if verbose:
        yield
        return
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def _distribution(p):
    import optuna

    if isinstance(p, Float):
        return optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)
    if isinstance(p, Int):
        return optuna.distributions.IntDistribution(p.low, p.high, log=p.log)
    return optuna.distributions.CategoricalDistribution(list(p.choices))


def _check_gp() -> None:
    """strategy="gp" needs Optuna's GPSampler (optuna >= 3.6) and scipy (and torch)."""
    import optuna

    if not hasattr(optuna.samplers, "GPSampler"):
        raise ImportError(f"strategy='gp' needs optuna >= 3.6 (GPSampler); optuna {optuna.__version__} is "
                          "installed: pip install -U optuna, or use strategy='tpe'")
    for module in ("scipy", "torch"):
        try:
            __import__(module)
        except ImportError as exc:
            raise ImportError(f"strategy='gp' needs {module} (Optuna's GPSampler uses it): "
                              f"pip install {module}, or use strategy='tpe'") from exc


def _storage(storage: Any):
    import optuna

    if storage is None:
        return optuna.storages.InMemoryStorage()
    if isinstance(storage, (str, os.PathLike)):
        s = os.fspath(storage)
        if "://" in s:
            return optuna.storages.RDBStorage(s)
        path = os.path.abspath(s)
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            raise ValueError(f"storage: the folder {parent!r} does not exist")
        return optuna.storages.RDBStorage(f"sqlite:///{path}")
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    raise TypeError(f"storage must be None, a file path, a database URL or an optuna storage; "
                    f"got {type(storage).__name__}")


def _fingerprint(real: Any) -> str:
    real = to_host(real)  # a CUDA real set has the fingerprint of its values
    h = hashlib.sha256()
    h.update(str(real.shape).encode())
    h.update(np.ascontiguousarray(real, dtype=np.float64).tobytes())
    return h.hexdigest()[:32]


class SimOptimizer:
    """Closed-loop search for the simulator configuration whose samples are
    closest to the real set in latent space (ask / tell).

    Each configuration is scored by its MMD^2 to the real set (unbiased
    estimator), every configuration of a round in one :func:`simgap.mmd2_batch`
    call, with one bandwidth for the whole study (the median heuristic of the
    real set, computed at construction and stored with the study) so that
    values are comparable across rounds and sessions.  A user ``objective`` can
    replace the value that is minimised.

    Parameters
    ----------
    space : dict
        Parameter name -> :class:`simgap.Float` / :class:`simgap.Int` /
        :class:`simgap.Categorical` (or a ``(low, high)`` tuple / a list of
        choices: str, int, float, bool or None).
    real : array_like, shape (n, d)
        The real set: latents, or raw samples when ``embed`` is given (then it
        is embedded too).  Latents that are CUDA tensors stay on their GPU and
        every configuration is scored there (:func:`simgap.mmd2_batch`); the
        sets given to :meth:`tell` must then be on the same device.
    embed : callable, optional
        Raw samples -> latents of shape (m, d); applied to ``real`` and to every
        set passed to :meth:`tell`.
    strategy : {"tpe", "gp", "cmaes", "random"} or optuna sampler, default "tpe"
        "tpe": multivariate TPE with the constant liar (so that the k
        configurations of a batch differ); "gp": Gaussian-process Bayesian
        optimisation (Optuna's ``GPSampler``: a Matern-5/2 GP with a fitted
        noise term, ``deterministic_objective=False``, and log expected
        improvement; uniform until 10 configurations are told; with optuna >=
        5.0 the configurations asked but not yet told enter a batch
        acquisition (qLogEI) so that a batch spreads out, while older
        GPSamplers ignore them and may repeat a configuration within a batch:
        use ``batch_size=1`` there);
        "cmaes": CMA-ES (population = ``batch_size`` when >= 4; categorical
        parameters sampled independently); "random": uniform.  The sampler is
        rebuilt for every trial with a seed drawn from (``seed``, trial
        number), so an interrupted and resumed study asks the same
        configurations as an uninterrupted one.  An optuna sampler object is
        used as given.

        Which one: "gp" when a simulator call is expensive (a render farm, a
        physics engine) and the space has up to about 10 numeric parameters:
        it needed the fewest calls on both built-in benchmark simulators
        (2.6x fewer than "tpe" on the image one, 1.3x on the Gaussian mixture;
        ``benchmarks/RESULTS.md``) but spends 0.1-0.5 s per asked
        configuration on 2 cores (a GP fit and an acquisition search), and
        needs optuna >= 3.6, scipy and torch.  "tpe" (the default, with no
        extra dependency) for cheap calls, many parameters or many
        categorical ones; "random" as the baseline.
    batch_size : int, default 8
        Configurations per :meth:`ask` / :meth:`optimize` round.
    seed : int, default 0
    storage : None, path or URL or optuna storage, default None
        None keeps the study in memory; a file path becomes
        ``sqlite:///<absolute path>``; a URL (``"sqlite:///..."``,
        ``"postgresql://..."``) or an optuna storage object is used as is.
        With a database, every asked and told configuration is written as it
        happens, and a new SimOptimizer with the same storage and
        ``study_name`` continues the study.
    study_name : str, default "simgap"
    pending : {"reask", "fail"}, default "reask"
        What to do with configurations asked in an earlier session but never
        told: "reask" hands them out again first (the next :meth:`ask` returns
        them before new ones; :meth:`tell` accepts their results at any time);
        "fail" marks them failed.
    objective : callable, optional
        ``objective(config, latents, mmd2) -> float`` minimised instead of the MMD^2
        (which is still recorded); ``latents`` is the checked set as told (a
        NumPy array, or a CUDA tensor for CUDA sets).
    kernel : str, default "gaussian"
    bandwidth : "median" or float, default "median"
        "median": :func:`simgap.median_bandwidth` of the (embedded) real set.
    verbose : bool, default False
        Leave Optuna's logging and warnings as they are.

    Examples
    --------
    >>> import numpy as np, simgap
    >>> rng = np.random.default_rng(0)
    >>> real = rng.normal(0.7, 1.0, size=(300, 2))
    >>> opt = simgap.SimOptimizer({"shift": (-2.0, 2.0)}, real, batch_size=4, seed=0)
    >>> configs = opt.ask()
    >>> sets = [rng.normal(c["shift"], 1.0, size=(200, 2)) for c in configs]
    >>> values = opt.tell(configs, sets)
    >>> opt.optimize(lambda c: rng.normal(c["shift"], 1.0, size=(200, 2)), n_rounds=5)
    SimOptimizer(strategy='tpe', evaluated=24, pending=0, storage=None)
    >>> bool(abs(opt.best_config["shift"] - 0.7) < 0.5)
    True

    The Gaussian-process strategy, for expensive simulator calls:

    >>> gp = simgap.SimOptimizer({"shift": (-2.0, 2.0)}, real, strategy="gp", batch_size=1, seed=0)
    >>> gp.optimize(lambda c: rng.normal(c["shift"], 1.0, size=(200, 2)), n_rounds=15)
    SimOptimizer(strategy='gp', evaluated=15, pending=0, storage=None)
    >>> bool(abs(gp.best_config["shift"] - 0.7) < 0.5)
    True
    """

    def __init__(
        self,
        space: Any,
        real: Any,
        *,
        embed: Callable | None = None,
        strategy: Any = "tpe",
        batch_size: int = 8,
        seed: int = 0,
        storage: Any = None,
        study_name: str = "simgap",
        pending: str = "reask",
        objective: Callable | None = None,
        kernel: str = "gaussian",
        bandwidth: Any = "median",
        verbose: bool = False,
    ):
        import optuna

        self.space = as_space(space, "space")
        for name, p in self.space.items():
            if isinstance(p, Categorical):
                bad = [c for c in p.choices if c is not None and not isinstance(c, (str, int, float, bool))]
                if bad:
                    raise TypeError(f"space[{name!r}]: choices must be str, int, float, bool or None "
                                    f"for the optimizer; got {bad[:3]}")
        if embed is not None and not callable(embed):
            raise TypeError(f"embed must be a callable (raw samples -> latents) or None; got {type(embed).__name__}")
        if objective is not None and not callable(objective):
            raise TypeError(f"objective must be a callable or None; got {type(objective).__name__}")
        self.embed = embed
        self.objective = objective
        if isinstance(strategy, str):
            if strategy.lower() not in _STRATEGIES:
                raise ValueError(f"strategy must be one of {_STRATEGIES} or an optuna sampler; got {strategy!r}")
            self.strategy = strategy.lower()
            if self.strategy == "gp":
                _check_gp()
        elif isinstance(strategy, optuna.samplers.BaseSampler):
            self.strategy = strategy
        else:
            raise TypeError(f"strategy must be one of {_STRATEGIES} or an optuna sampler; "
                            f"got {type(strategy).__name__}")
        self.batch_size = as_positive_int(batch_size, "batch_size")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        if not isinstance(study_name, str) or not study_name:
            raise TypeError(f"study_name must be a non-empty string, got {study_name!r}")
        if not isinstance(pending, str) or pending not in _PENDING:
            raise ValueError(f"pending must be one of {_PENDING}; got {pending!r}")
        if not isinstance(kernel, str) or kernel.lower() not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}; got {kernel!r}")
        self.kernel = kernel.lower()
        self.verbose = bool(verbose)

        self.real = self._latents(real, "real")
        self._device = device_of(real=self.real)
        if self.real.shape[0] < 2:
            raise ValueError("real has 1 row; at least 2 are needed")
        if isinstance(bandwidth, str):
            if bandwidth.lower() != "median":
                raise ValueError(f"bandwidth must be 'median' or a positive number; got {bandwidth!r}")
            sigma = median_bandwidth(self.real, seed=self.seed)
        elif isinstance(bandwidth, bool) or not isinstance(bandwidth, numbers.Real) \
                or not (math.isfinite(bandwidth) and bandwidth > 0):
            raise ValueError(f"bandwidth must be 'median' or a positive number; got {bandwidth!r}")
        else:
            sigma = float(bandwidth)
        self._distributions = {k: _distribution(p) for k, p in self.space.items()}

        self._storage_arg = storage
        with _quiet(self.verbose):
            self._storage = _storage(storage)
            self.study = optuna.create_study(storage=self._storage, study_name=study_name,
                                             direction="minimize", load_if_exists=True)
        self._study_id = self._storage.get_study_id_from_name(study_name)
        attrs = self.study.user_attrs.get(_ATTR)
        meta = {"space": space_to_dict(self.space), "real": _fingerprint(self.real), "bandwidth": sigma,
                "kernel": self.kernel, "d": int(self.real.shape[1]), "seed": self.seed}
        if attrs is None:
            self.study.set_user_attr(_ATTR, meta)
            self.study.set_user_attr(_ATTR + "_rounds", 0)
            self.study.set_user_attr(_ATTR + "_told", 0)
        else:
            if attrs["space"] != json.loads(json.dumps(meta["space"])):
                raise ValueError(f"space differs from the space of the stored study {study_name!r} "
                                 f"({attrs['space']}); use another study_name or storage")
            if attrs["real"] != meta["real"]:
                raise ValueError(f"real differs from the real set the stored study {study_name!r} was "
                                 "started with; values would not be comparable (use another study_name)")
            if attrs.get("seed", self.seed) != self.seed:  # (studies stored before the seed was recorded: any)
                raise ValueError(f"seed {self.seed} differs from the stored study's {attrs['seed']}: a resumed "
                                 "study would not continue the same sequence (use the same seed or another "
                                 "study_name)")
            if attrs["kernel"] != self.kernel:
                raise ValueError(f"kernel {self.kernel!r} differs from the stored study's {attrs['kernel']!r}")
            if not isinstance(bandwidth, str) and abs(attrs["bandwidth"] - sigma) > 1e-12 * sigma:
                raise ValueError(f"bandwidth {sigma} differs from the stored study's {attrs['bandwidth']}")
            sigma = float(attrs["bandwidth"])
        self.bandwidth = float(sigma)
        self._reask: list[int] = []
        running = self._running()
        if pending == "fail":
            with _quiet(self.verbose):
                for t in running:
                    self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        else:
            self._reask = [t.number for t in running]

    # ------------------------------------------------------------------ plumbing

    def _latents(self, samples: Any, name: str) -> np.ndarray:
        if self.embed is not None:
            try:
                samples = self.embed(samples)
            except Exception as exc:
                # The user's own exception, unchanged (its type, arguments and
                # attributes), with a note saying where it happened.
                if hasattr(exc, "add_note"):  # Python >= 3.11
                    exc.add_note(f"simgap: embed failed on {name}")
                raise
            name = f"embed({name})"
        if device_of(**{name: samples}) != "cpu":  # (a CUDA tensor needs the CUDA build)
            from ._ops.cuda import as_cuda_matrix

            return as_cuda_matrix(samples, name)  # scored on its GPU
        return as_matrix(samples, name)

    def _running(self):
        import optuna

        return self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))

    def _sampler_for(self, number: int):
        import optuna

        if not isinstance(self.strategy, str):
            return self.strategy
        seed = int(np.random.SeedSequence([self.seed, number]).generate_state(1)[0] % (2**31 - 1))
        if self.strategy == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if self.strategy == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
        if self.strategy == "gp":
            return optuna.samplers.GPSampler(seed=seed, deterministic_objective=False,
                                             independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                                             warn_independent_sampling=False)
        kw = {"popsize": self.batch_size} if self.batch_size >= 4 else {}
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False, **kw)

    def _check_config(self, config: Any, name: str) -> dict:
        if not isinstance(config, Mapping):
            raise TypeError(f"{name} must be a dict from parameter name to value, got {type(config).__name__}")
        missing = [k for k in self.space if k not in config]
        extra = [k for k in config if k not in self.space]
        if missing or extra:
            raise ValueError(f"{name} must have exactly the parameters {list(self.space)}; "
                             f"missing {missing}, unknown {extra}")
        out = {}
        for k, p in self.space.items():
            v = config[k]
            v = v.item() if isinstance(v, np.generic) else v
            if isinstance(p, Categorical):
                if v not in p.choices:
                    raise ValueError(f"{name}[{k!r}] = {v!r} is not among the choices {list(p.choices)}")
            else:
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                    raise TypeError(f"{name}[{k!r}] must be a finite number, got {v!r}")
                if isinstance(p, Int) and float(v) != round(float(v)):
                    raise ValueError(f"{name}[{k!r}] = {v!r} must be an integer")
                if not p.low <= v <= p.high:
                    raise ValueError(f"{name}[{k!r}] = {v!r} is outside [{p.low}, {p.high}]")
                v = int(round(v)) if isinstance(p, Int) else float(v)
            out[k] = v
        return out

    # ------------------------------------------------------------------ ask / tell

    def ask(self, k: int | None = None) -> list[dict]:
        """Configurations to render next.

        Parameters
        ----------
        k : int, optional
            How many (default ``batch_size``).  Configurations asked in an
            earlier session and never told come first (``pending="reask"``).

        Returns
        -------
        list of dict
            ``k`` dicts from parameter name to value (float, int or a choice).
        """
        k = self.batch_size if k is None else as_positive_int(k, "k")
        out = []
        with _quiet(self.verbose):
            running = {t.number: t for t in self._running()}
            while self._reask and len(out) < k:
                number = self._reask.pop(0)
                if number in running:
                    out.append(dict(running[number].params))
            if len(out) < k:
                rnd = int(self.study.user_attrs.get(_ATTR + "_rounds", 0))
                self.study.set_user_attr(_ATTR + "_rounds", rnd + 1)
                for _ in range(k - len(out)):
                    self.study.sampler = self._sampler_for(len(self.study.get_trials(deepcopy=False)))
                    trial = self.study.ask(self._distributions)
                    trial.set_user_attr("round", rnd)
                    out.append(dict(trial.params))
        return out

    def tell(self, configs: Sequence[Mapping], synthetic_sets: Sequence[Any]) -> np.ndarray:
        """Report what the configurations rendered.

        Parameters
        ----------
        configs : list of dict
            Configurations, usually from :meth:`ask` (matched to the asked
            trials by value, so plain copies, e.g. read back from JSON, work).  A
            configuration that was never asked is recorded as a new trial (a
            warm start from renders you already have).
        synthetic_sets : list
            One entry per configuration: its samples' latents, shape (m_k, d)
            (raw samples when ``embed`` is given), or None when rendering failed
            (the trial is recorded as failed).

        Returns
        -------
        ndarray of float64, shape (len(configs),)
            The value minimised (MMD^2, or the user objective); NaN for failed ones.
        """
        import optuna

        if isinstance(configs, Mapping) or not isinstance(configs, Sequence):
            raise TypeError("configs must be a list of dicts (one per configuration)")
        if isinstance(synthetic_sets, np.ndarray) or not isinstance(synthetic_sets, Sequence):
            raise TypeError("synthetic_sets must be a list with one set of samples per configuration")
        if len(configs) != len(synthetic_sets):
            raise ValueError(f"configs has {len(configs)} entries but synthetic_sets has {len(synthetic_sets)}")
        checked = [self._check_config(c, f"configs[{i}]") for i, c in enumerate(configs)]
        latents: list[np.ndarray | None] = []
        for i, s in enumerate(synthetic_sets):
            if s is None:
                latents.append(None)
                continue
            z = self._latents(s, f"synthetic_sets[{i}]")
            check_same_features(self.real, z, "real", f"synthetic_sets[{i}]")
            where = device_of(**{f"synthetic_sets[{i}]": z})
            if where != self._device:
                raise ValueError(f"synthetic_sets[{i}] is on {where} but real is on {self._device}; "
                                 "give every set on the device of real")
            if z.shape[0] < 2:
                raise ValueError(f"synthetic_sets[{i}] has 1 sample; at least 2 are needed")
            latents.append(z)
        ok = [i for i, z in enumerate(latents) if z is not None]
        gaps = np.full(len(configs), np.nan)
        if ok:
            gaps[ok] = mmd2_batch(self.real, [latents[i] for i in ok], kernel=self.kernel,
                                  bandwidth=self.bandwidth, estimator="unbiased")
        values = gaps.copy()
        if self.objective is not None:
            for i in ok:
                v = self.objective(dict(checked[i]), latents[i], float(gaps[i]))
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                    raise ValueError(f"objective returned {v!r} for configs[{i}]; it must return a finite number")
                values[i] = float(v)

        with _quiet(self.verbose):
            running = list(self._running())
            order = int(self.study.user_attrs.get(_ATTR + "_told", 0))
            for i, cfg in enumerate(checked):
                match = next((t for t in running if _same(t.params, cfg)), None)
                attrs = {"order": order, "n_samples": 0 if latents[i] is None else int(latents[i].shape[0])}
                if latents[i] is not None:
                    attrs["mmd2"] = float(gaps[i])
                if match is not None:
                    running.remove(match)
                    if match.number in self._reask:
                        self._reask.remove(match.number)
                    trial_id = self._storage.get_trial_id_from_study_id_trial_number(self._study_id, match.number)
                    for key, val in attrs.items():
                        self._storage.set_trial_user_attr(trial_id, key, val)
                    if latents[i] is None:
                        self.study.tell(match.number, state=optuna.trial.TrialState.FAIL)
                    else:
                        self.study.tell(match.number, float(values[i]))
                else:
                    told = next((t.number for t in self.study.get_trials(deepcopy=False)
                                 if t.state.is_finished() and _same(t.params, cfg)), None)
                    if told is not None:
                        warnings.warn(f"configs[{i}] was already told (trial {told}); it is recorded again, as a "
                                      "new trial", stacklevel=2)
                    attrs["round"] = -1
                    self.study.add_trial(optuna.trial.create_trial(
                        params=cfg, distributions=self._distributions, user_attrs=attrs,
                        state=(optuna.trial.TrialState.FAIL if latents[i] is None
                               else optuna.trial.TrialState.COMPLETE),
                        value=None if latents[i] is None else float(values[i])))
                order += 1
            self.study.set_user_attr(_ATTR + "_told", order)
        return values

    def optimize(self, simulate_fn: Callable[[dict], Any], n_rounds: int, *, batch_size: int | None = None,
                 callback: Callable | None = None) -> "SimOptimizer":
        """Run ``n_rounds`` rounds of ask -> ``simulate_fn(config)`` for each -> tell.

        Parameters
        ----------
        simulate_fn : callable
            ``config (dict) -> samples`` (latents, or raw samples when ``embed``
            is given; None for a failed render).
        n_rounds : int
        batch_size : int, optional
            Configurations per round (default the optimizer's ``batch_size``).
        callback : callable, optional
            ``callback(optimizer, round_index)`` after each round.

        Returns
        -------
        SimOptimizer
            ``self``.  If ``simulate_fn`` raises, the round's configurations stay
            pending (with a database storage, a new session can tell or re-ask them).
        """
        if not callable(simulate_fn):
            raise TypeError(f"simulate_fn must be a callable, got {type(simulate_fn).__name__}")
        n_rounds = as_positive_int(n_rounds, "n_rounds")
        k = self.batch_size if batch_size is None else as_positive_int(batch_size, "batch_size")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be a callable or None, got {type(callback).__name__}")
        for r in range(n_rounds):
            configs = self.ask(k)
            sets = [simulate_fn(dict(c)) for c in configs]
            self.tell(configs, sets)
            if callback is not None:
                callback(self, r)
        return self

    # ------------------------------------------------------------------ results

    def _complete(self):
        import optuna

        return self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))

    def _best(self):
        done = self._complete()
        if not done:
            raise RuntimeError("no configuration has been evaluated yet; call tell() or optimize() first")
        return min(done, key=lambda t: (t.value, t.number))

    @property
    def best_config(self) -> dict:
        """The evaluated configuration with the lowest value (a dict)."""
        return dict(self._best().params)

    @property
    def best_value(self) -> float:
        """Its value: the MMD^2 to the real set (or the user objective)."""
        return float(self._best().value)

    @property
    def best_mmd2(self) -> float:
        """The MMD^2 of :attr:`best_config` (equal to :attr:`best_value` without a user objective)."""
        return float(self._best().user_attrs["mmd2"])

    @property
    def pending(self) -> list[dict]:
        """Configurations asked but not yet told."""
        return [dict(t.params) for t in self._running()]

    @property
    def n_evaluated(self) -> int:
        """Number of configurations told with a result."""
        return len(self._complete())

    @property
    def history(self):
        """Every trial as a pandas DataFrame: trial, round, order (position in
        the order results were told), state, value, mmd2, n_samples, then one
        column per parameter."""

        rows = []
        for t in self.study.get_trials(deepcopy=False):
            row = {"trial": t.number, "round": t.user_attrs.get("round", -1),
                   "order": t.user_attrs.get("order", -1), "state": t.state.name.lower(),
                   "value": np.nan if t.value is None else float(t.value),
                   "mmd2": float(t.user_attrs.get("mmd2", np.nan)),
                   "n_samples": int(t.user_attrs.get("n_samples", 0))}
            for k in self.space:
                row[k] = t.params.get(k)
            rows.append(row)
        cols = ["trial", "round", "order", "state", "value", "mmd2", "n_samples", *self.space]
        return space_frame({c: [r[c] for r in rows] for c in cols}, self.space, columns=cols)

    def convergence(self) -> dict[str, np.ndarray]:
        """Data for a convergence plot, in the order results were told.

        Returns
        -------
        dict of ndarray, each of shape (n_evaluated,)
            ``calls`` (1, 2, ...: simulator calls so far), ``value`` (each
            call's value), ``best`` (the best value so far), ``mmd2``, ``round``
            and ``trial``.
        """
        done = sorted(self._complete(), key=lambda t: (t.user_attrs.get("order", 0), t.number))
        value = np.array([t.value for t in done], dtype=np.float64)
        return {
            "calls": np.arange(1, len(done) + 1),
            "value": value,
            "best": np.minimum.accumulate(value) if value.size else value,
            "mmd2": np.array([t.user_attrs.get("mmd2", np.nan) for t in done], dtype=np.float64),
            "round": np.array([t.user_attrs.get("round", -1) for t in done], dtype=np.int64),
            "trial": np.array([t.number for t in done], dtype=np.int64),
        }

    def close(self) -> None:
        """Release the database connection (the study stays in the storage)."""
        engine = getattr(self._storage, "engine", None)
        if engine is not None:
            engine.dispose()

    def __enter__(self) -> "SimOptimizer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        strategy = self.strategy if isinstance(self.strategy, str) else type(self.strategy).__name__
        storage = self._storage_arg if self._storage_arg is None or isinstance(self._storage_arg, str) \
            else type(self._storage_arg).__name__
        return (f"SimOptimizer(strategy={strategy!r}, evaluated={self.n_evaluated}, "
                f"pending={len(self._running())}, storage={storage!r})")


def _same(params: Mapping, cfg: Mapping) -> bool:
    for k, v in cfg.items():
        u = params.get(k)
        if isinstance(v, float) and isinstance(u, (int, float)) and not isinstance(u, bool):
            if not (u == v or abs(u - v) <= 1e-12 * max(1.0, abs(v))):
                return False
        elif u != v:
            return False
    return True
