""":class:`SimOptimizer`: the ask / tell loop over Optuna's samplers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import numbers
import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._ops.inputs import as_matrix, check_same_features, device_of
from .._util.arrays import to_host
from .._util.checks import as_positive_int
from ..kernels import KERNELS, median_bandwidth
from ..mmd import mmd2_batch
from ..space import Categorical, Float, Int, as_space, space_to_dict
from .results import best_trial, complete_trials, convergence_arrays, history_frame
from .sessions import Session, open_storage, storage_spec

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
    """strategy="gp" needs Optuna's GPSampler (optuna >= 3.6) and scipy (torch, which it
    uses too, is a dependency of simgap)."""
    import optuna

    if not hasattr(optuna.samplers, "GPSampler"):
        raise ImportError(f"strategy='gp' needs optuna >= 3.6 (GPSampler); optuna {optuna.__version__} is "
                          "installed: pip install -U optuna, or use strategy='tpe'")
    try:
        import scipy  # noqa: F401
    except ImportError as exc:
        raise ImportError("strategy='gp' needs scipy (Optuna's GPSampler uses it): "
                          "pip install scipy, or use strategy='tpe'") from exc


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
        ``study_name`` continues the study.  A SQLite file gets a folder
        ``<file>.simgap`` next to it, for its locks (see Notes).  A URL that
        SQLAlchemy cannot parse or has no dialect for raises a ValueError.
    study_name : str, default "simgap"
    pending : {"reask", "fail"}, default "reask"
        What to do with configurations asked by a session that has ended
        (its process was killed, or the SimOptimizer closed) and never told:
        "reask" hands them out again, once, first (the next :meth:`ask`
        returns them before new ones; :meth:`tell` accepts their results at
        any time); "fail" marks them failed.  A configuration whose
        parameters a killed :meth:`ask` left partly or wholly unsuggested is
        never handed out as it is: "reask" suggests the missing parameters (as
        that ask would have: the configuration is the one an uninterrupted
        study asks), "fail" fails it.
    objective : callable, optional
        ``objective(config, latents, mmd2) -> float`` minimised instead of the MMD^2
        (which is still recorded); ``latents`` is the checked set as told (a
        NumPy array, or a CUDA tensor for CUDA sets).
    kernel : str, default "gaussian"
    bandwidth : "median" or float, default "median"
        "median": :func:`simgap.median_bandwidth` of the (embedded) real set.
    verbose : bool, default False
        Leave Optuna's logging and warnings as they are.

    Notes
    -----
    Several processes (or SimOptimizer objects) may share one study, each
    running its own ask / tell rounds: a campaign of workers.  Every
    SimOptimizer is a session, recorded on each trial it asks; :meth:`ask`
    hands out new configurations (their samplers seeded by their own trial
    numbers, so no two sessions draw the same) and configurations abandoned by
    ended sessions, never those another open session holds; :meth:`tell`
    tells the trials this session asked (or abandoned ones), so every tell
    lands once.  On a SQLite file, the folder ``<file>.simgap`` holds the
    study lock, taken by each ask, tell and opening of the study (so that
    they are atomic across processes and never collide in SQLite), and one
    file per open session, locked for its lifetime: the operating system
    releases it when the process ends, however it ends, which is how a
    session tells an ended one from a live one (on one machine; not on a
    network file system without ``flock``).  On a server database or an
    optuna storage object, only the sessions of this process are known to be
    alive: a new session takes the configurations pending from other
    processes for abandoned when it opens the study (as a resume after a
    crash needs); should their session still be alive, its tell of a
    configuration told meanwhile is recorded as a new trial, with a warning.

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
        spec, sqlite_path = storage_spec(storage)
        self._session = Session(sqlite_path)
        self._pending_policy = pending
        try:
            self._open_study(spec, study_name, sigma, bandwidth, pending)
        except BaseException:
            self.close()
            raise

    def _open_study(self, spec: Any, study_name: str, sigma: float, bandwidth: Any, pending: str) -> None:
        import optuna

        self._storage = None
        with self._session.locked(), _quiet(self.verbose):
            self._storage = open_storage(spec)
            self.study = optuna.create_study(storage=self._storage, study_name=study_name,
                                             direction="minimize", load_if_exists=True)
            if not isinstance(self.strategy, str):
                self.study.sampler = self.strategy
            self._study_id = self._storage.get_study_id_from_name(study_name)
            sigma = self._check_meta(study_name, sigma, bandwidth)
            self.bandwidth = float(sigma)
            running = self._running()
            self._session.opened(running)
            if pending == "fail":
                self._fail(self._session.abandoned(running))

    def _check_meta(self, study_name: str, sigma: float, bandwidth: Any) -> float:
        """Record this study's setup (space, real set, bandwidth, kernel, seed) in a new study;
        check it against a stored one.  Returns the bandwidth (the stored one on a resume)."""
        attrs = self.study.user_attrs.get(_ATTR)
        meta = {"space": space_to_dict(self.space), "real": _fingerprint(self.real), "bandwidth": sigma,
                "kernel": self.kernel, "d": int(self.real.shape[1]), "seed": self.seed}
        if attrs is None:
            self.study.set_user_attr(_ATTR, meta)
            self.study.set_user_attr(_ATTR + "_rounds", 0)
            self.study.set_user_attr(_ATTR + "_told", 0)
            return sigma
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
        return float(attrs["bandwidth"])

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
        # A CUDA tensor stays on its GPU and is scored there (it needs the CUDA build).
        return as_matrix(samples, name, device=device_of(**{name: samples}))

    def _running(self):
        import optuna

        return self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))

    def _trial_id(self, number: int) -> int:
        return self._storage.get_trial_id_from_study_id_trial_number(self._study_id, number)

    def _fail(self, trials) -> None:
        for t in trials:
            self._finish(t.number, {}, None)

    def _claim(self, t) -> dict | None:
        """Make the abandoned trial ``t`` this session's; its configuration (the parameters a
        killed ``ask`` left unsuggested are suggested now, as that ask would have), or None if
        it was finished meanwhile."""
        import optuna

        trial_id = self._trial_id(t.number)
        try:
            self._storage.set_trial_user_attr(trial_id, "session", self._session.token)
            if all(k in t.params for k in self.space):
                return dict(t.params)
            # A fresh Study object: the sampler sees the trials as they are now (and get_trials
            # makes its storage cache know them all, the trial to complete included).
            study = optuna.load_study(study_name=self.study.study_name, storage=self._storage,
                                      sampler=self._sampler_for(t.number))
            study.get_trials(deepcopy=False)
            trial = optuna.trial.Trial(study, trial_id)
            self._suggest(trial)
            if "round" not in t.user_attrs:
                trial.set_user_attr("round", max(int(self.study.user_attrs.get(_ATTR + "_rounds", 1)) - 1, 0))
            return dict(trial.params)
        except optuna.exceptions.UpdateFinishedTrialError:
            return None

    def _suggest(self, trial) -> None:
        """Suggest every parameter of the space on ``trial`` (in the space's order)."""
        for name, p in self.space.items():
            if isinstance(p, Float):
                trial.suggest_float(name, p.low, p.high, log=p.log)
            elif isinstance(p, Int):
                trial.suggest_int(name, p.low, p.high, log=p.log)
            else:
                trial.suggest_categorical(name, list(p.choices))

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
            How many (default ``batch_size``).  Configurations asked by a
            session that has ended and never told come first
            (``pending="reask"``; see the class Notes).

        Returns
        -------
        list of dict
            ``k`` dicts from parameter name to value (float, int or a choice).
        """
        k = self.batch_size if k is None else as_positive_int(k, "k")
        out = []
        self._session.renew()
        with self._session.locked(), _quiet(self.verbose):
            orphans = self._session.abandoned(self._running())
            if self._pending_policy == "fail":
                self._fail(orphans)
            else:
                for t in orphans:
                    if len(out) == k:
                        break
                    config = self._claim(t)
                    if config is not None:
                        out.append(config)
            if len(out) < k:
                rnd = int(self.study.user_attrs.get(_ATTR + "_rounds", 0))
                self.study.set_user_attr(_ATTR + "_rounds", rnd + 1)
                for _ in range(k - len(out)):
                    out.append(self._ask_new(rnd))
        return out

    def _ask_new(self, rnd: int) -> dict:
        """A new trial of this session, sampled with the sampler seeded by its number."""
        # The seed comes from the trial's own number, known once the trial exists (the built-in
        # samplers' before_trial, called by ask() with the previous sampler, does nothing), not
        # from a count of the trials taken before: two sessions asking at once never share a seed.
        trial = self.study.ask()
        trial.set_user_attr("session", self._session.token)
        self.study.sampler = self._sampler_for(trial.number)
        self._suggest(trial)
        trial.set_user_attr("round", rnd)
        return dict(trial.params)

    def tell(self, configs: Sequence[Mapping], synthetic_sets: Sequence[Any]) -> np.ndarray:
        """Report what the configurations rendered.

        Parameters
        ----------
        configs : list of dict
            Configurations, usually from :meth:`ask` (matched by value to
            the trials this session asked, or else to those an ended session
            left pending, so plain copies, e.g. read back from JSON, work).  A
            configuration that matches none is recorded as a new trial (a warm
            start from renders you already have).
        synthetic_sets : list
            One entry per configuration: its samples' latents, shape (m_k, d)
            (raw samples when ``embed`` is given), or None when rendering failed
            (the trial is recorded as failed).

        Returns
        -------
        ndarray of float64, shape (len(configs),)
            The value minimised (MMD^2, or the user objective); NaN for failed ones.
        """
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

        self._session.renew()
        with self._session.locked(), _quiet(self.verbose):
            running = self._running()
            mine = [t for t in running if t.user_attrs.get("session") == self._session.token]
            orphans = None
            order = int(self.study.user_attrs.get(_ATTR + "_told", 0))
            for i, cfg in enumerate(checked):
                # the trial this session asked with this configuration; else an abandoned one
                match = next((t for t in mine if _same(t.params, cfg)), None)
                if match is not None:
                    mine.remove(match)
                else:
                    if orphans is None:
                        orphans = [t for t in self._session.abandoned(running)
                                   if all(k in t.params for k in self.space)]
                    match = next((t for t in orphans if _same(t.params, cfg)), None)
                    if match is not None:
                        orphans.remove(match)
                        if self._claim(match) is None:
                            match = None
                attrs = {"order": order, "n_samples": 0 if latents[i] is None else int(latents[i].shape[0])}
                if latents[i] is not None:
                    attrs["mmd2"] = float(gaps[i])
                value = None if latents[i] is None else float(values[i])
                if match is None or not self._finish(match.number, attrs, value):
                    self._add(cfg, attrs, value, f"configs[{i}]")
                order += 1
            self.study.set_user_attr(_ATTR + "_told", order)
        return values

    def _finish(self, number: int, attrs: dict, value: float | None) -> bool:
        """Tell the running trial ``number``; False if another session finished it first."""
        import optuna

        trial_id = self._trial_id(number)
        try:
            for key, val in attrs.items():
                self._storage.set_trial_user_attr(trial_id, key, val)
            if value is None:
                self.study.tell(number, state=optuna.trial.TrialState.FAIL)
            else:
                self.study.tell(number, value)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        except ValueError:  # optuna's "Cannot tell a COMPLETE trial": finished since the check
            if self._storage.get_trial(trial_id).state.is_finished():
                return False
            raise
        return True

    def _add(self, cfg: dict, attrs: dict, value: float | None, name: str) -> None:
        """Record a configuration that matches no pending trial as a new, finished trial."""
        import optuna

        told = next((t.number for t in self.study.get_trials(deepcopy=False)
                     if t.state.is_finished() and _same(t.params, cfg)), None)
        if told is not None:
            warnings.warn(f"{name} was already told (trial {told}); it is recorded again, as a "
                          "new trial", stacklevel=3)
        self.study.add_trial(optuna.trial.create_trial(
            params=cfg, distributions=self._distributions, user_attrs={**attrs, "round": -1},
            state=optuna.trial.TrialState.FAIL if value is None else optuna.trial.TrialState.COMPLETE,
            value=value))

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

    @property
    def best_config(self) -> dict:
        """The evaluated configuration with the lowest value (a dict)."""
        return dict(best_trial(self.study).params)

    @property
    def best_value(self) -> float:
        """Its value: the MMD^2 to the real set (or the user objective)."""
        return float(best_trial(self.study).value)

    @property
    def best_mmd2(self) -> float:
        """The MMD^2 of :attr:`best_config` (equal to :attr:`best_value` without a user objective)."""
        return float(best_trial(self.study).user_attrs["mmd2"])

    @property
    def pending(self) -> list[dict]:
        """Configurations asked but not yet told (by any session of the study)."""
        return [dict(t.params) for t in self._running() if all(k in t.params for k in self.space)]

    @property
    def n_evaluated(self) -> int:
        """Number of configurations told with a result."""
        return len(complete_trials(self.study))

    @property
    def history(self):
        """Every trial as a pandas DataFrame: trial, round, order (position in
        the order results were told), state, value, mmd2, n_samples, then one
        column per parameter."""
        return history_frame(self.study, self.space)

    def convergence(self) -> dict[str, np.ndarray]:
        """Data for a convergence plot, in the order results were told.

        Returns
        -------
        dict of ndarray, each of shape (n_evaluated,)
            ``calls`` (1, 2, ...: simulator calls so far), ``value`` (each
            call's value), ``best`` (the best value so far), ``mmd2``, ``round``
            and ``trial``.
        """
        return convergence_arrays(self.study)

    def close(self) -> None:
        """End this session and release the database connection (the study stays in the
        storage; configurations this session asked and did not tell are then pending for the
        next session that asks)."""
        self._session.end()
        engine = getattr(getattr(self, "_storage", None), "engine", None)
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
                f"pending={len(self.pending)}, storage={storage!r})")


def _same(params: Mapping, cfg: Mapping) -> bool:
    for k, v in cfg.items():
        u = params.get(k)
        if isinstance(v, float) and isinstance(u, (int, float)) and not isinstance(u, bool):
            if not (u == v or abs(u - v) <= 1e-12 * max(1.0, abs(v))):
                return False
        elif u != v:
            return False
    return True
