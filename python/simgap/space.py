"""Parameter spaces of a simulator: :class:`Float`, :class:`Int` and :class:`Categorical`.

One format serves the offline recommender (:func:`simgap.recommend`) and the
closed loop (:class:`simgap.SimOptimizer`): a dict from parameter name to a
parameter type.  Shorthands: a ``(low, high)`` tuple is a :class:`Float`, a
list is a :class:`Categorical`.

>>> import simgap
>>> from simgap.space import as_space
>>> space = as_space({"size": simgap.Float(1.0, 6.0), "n": simgap.Int(1, 5),
...                   "blur": (0.0, 2.0), "shape": ["disc", "square"]})
>>> space["blur"], space["shape"]
(Float(low=0.0, high=2.0, log=False), Categorical(choices=('disc', 'square')))
"""

from __future__ import annotations

import numbers
from dataclasses import KW_ONLY, dataclass
from typing import Any, Mapping

import numpy as np

from ._util.checks import as_real

__all__ = ["Categorical", "Float", "Int", "as_space", "as_table", "check_table", "infer_space", "sample_space"]


@dataclass(frozen=True)
class Float:
    """A real parameter in ``[low, high]``.

    Parameters
    ----------
    low, high : float
        Inclusive bounds, ``low <= high`` (equal bounds fix the parameter).
    log : bool, default False
        Explore and smooth on a log scale (needs ``low > 0``): log-uniform
        sampling, kernel smoothing of ``log(value)``.

    Examples
    --------
    >>> import simgap
    >>> simgap.Float(0.1, 10.0, log=True).to_dict()
    {'type': 'float', 'low': 0.1, 'high': 10.0, 'log': True}
    """

    low: float
    high: float
    _: KW_ONLY
    log: bool = False

    def __post_init__(self) -> None:
        low, high = as_real(self.low, "low"), as_real(self.high, "high")
        if low > high:
            raise ValueError(f"low must be <= high; got low={low}, high={high}")
        if not isinstance(self.log, (bool, np.bool_)):
            raise TypeError(f"log must be a bool, got {type(self.log).__name__}")
        if self.log and low <= 0:
            raise ValueError(f"log=True needs low > 0; got low={low}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "log", bool(self.log))

    kind = "float"

    def to_dict(self) -> dict:
        """Plain-data form (JSON-serialisable)."""
        return {"type": "float", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Int:
    """An integer parameter in ``[low, high]`` (inclusive).

    Parameters
    ----------
    low, high : int
        Inclusive bounds, ``low <= high``.
    log : bool, default False
        Explore and smooth on a log scale (needs ``low >= 1``).

    Examples
    --------
    >>> import simgap
    >>> simgap.Int(1, 8)
    Int(low=1, high=8, log=False)
    """

    low: int
    high: int
    _: KW_ONLY
    log: bool = False

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                if isinstance(v, numbers.Real) and float(v).is_integer():
                    v = int(v)
                else:
                    raise TypeError(f"{name} must be an integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.low > self.high:
            raise ValueError(f"low must be <= high; got low={self.low}, high={self.high}")
        if not isinstance(self.log, (bool, np.bool_)):
            raise TypeError(f"log must be a bool, got {type(self.log).__name__}")
        if self.log and self.low < 1:
            raise ValueError(f"log=True needs low >= 1; got low={self.low}")
        object.__setattr__(self, "log", bool(self.log))

    kind = "int"

    def to_dict(self) -> dict:
        """Plain-data form (JSON-serialisable)."""
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Categorical:
    """A parameter that takes one of a list of choices.

    Parameters
    ----------
    choices : sequence
        Distinct, hashable values (str, int, float, bool or None for use with
        :class:`simgap.SimOptimizer`).

    Examples
    --------
    >>> import simgap
    >>> simgap.Categorical(["disc", "square"]).choices
    ('disc', 'square')
    """

    choices: tuple

    def __post_init__(self) -> None:
        if isinstance(self.choices, (str, bytes)) or not hasattr(self.choices, "__iter__"):
            raise TypeError(f"choices must be a list of values, got {type(self.choices).__name__}")
        choices = tuple(_plain(c) for c in self.choices)
        if not choices:
            raise ValueError("choices is empty; give at least one choice")
        try:
            distinct = len(set(choices)) == len(choices)
        except TypeError:
            raise TypeError("choices must be hashable values") from None
        nan = [c for c in choices if isinstance(c, float) and c != c]
        if not distinct or len(nan) > 1:  # NaN != NaN: two NaNs look distinct to a set
            raise ValueError(f"choices must be distinct; got {list(choices)}")
        object.__setattr__(self, "choices", choices)

    kind = "categorical"

    def to_dict(self) -> dict:
        """Plain-data form (JSON-serialisable when the choices are)."""
        return {"type": "categorical", "choices": list(self.choices)}


def _plain(v: Any) -> Any:
    """NumPy scalars -> Python scalars (so that values compare and serialise plainly)."""
    return v.item() if isinstance(v, np.generic) else v


Param = Float | Int | Categorical


def as_space(space: Any, name: str = "space") -> dict[str, Param]:
    """Check a space declaration and return it as a dict of :class:`Float`,
    :class:`Int` and :class:`Categorical`.

    Parameters
    ----------
    space : mapping
        Parameter name (str) -> Float, Int, Categorical, a ``(low, high)`` tuple
        (a Float) or a list (a Categorical).
    name : str
        The argument's name in error messages.

    Returns
    -------
    dict
        In the order given.
    """
    if not isinstance(space, Mapping):
        raise TypeError(f"{name} must be a dict from parameter name to Float, Int, Categorical, "
                        f"(low, high) or [choices]; got {type(space).__name__}")
    if not space:
        raise ValueError(f"{name} is empty; declare at least one parameter")
    out: dict[str, Param] = {}
    for key, p in space.items():
        if not isinstance(key, str):
            raise TypeError(f"{name}: parameter names must be strings, got {key!r}")
        where = f"{name}[{key!r}]"
        try:
            if isinstance(p, (Float, Int, Categorical)):
                out[key] = p
            elif isinstance(p, tuple):
                if len(p) != 2:
                    raise ValueError(f"a tuple must be (low, high); got {len(p)} values")
                out[key] = Float(p[0], p[1])
            elif isinstance(p, list):
                out[key] = Categorical(p)
            else:
                raise TypeError(f"expected Float, Int, Categorical, a (low, high) tuple or a list; "
                                f"got {type(p).__name__}")
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
    return out


def space_to_dict(space: Mapping[str, Param]) -> dict:
    """Plain-data form of a checked space."""
    return {k: p.to_dict() for k, p in space.items()}


def as_table(params: Any, name: str = "params") -> dict[str, np.ndarray]:
    """Columns of a parameter table: a pandas DataFrame, a dict of columns, a
    list of dicts (one per row) or a NumPy structured array.

    Returns
    -------
    dict
        Column name -> 1-D ndarray, all of the same length.
    """
    if params is None:
        raise TypeError(f"{name} must be a table of parameter values (DataFrame, dict of columns or "
                        "list of dicts), got None")
    cols: dict[str, np.ndarray] = {}
    if hasattr(params, "columns") and hasattr(params, "__getitem__") and hasattr(params, "to_numpy"):
        for c in params.columns:
            cols[c] = params[c].to_numpy()
    elif isinstance(params, np.ndarray) and params.dtype.names:
        for c in params.dtype.names:
            cols[c] = np.asarray(params[c])
    elif isinstance(params, Mapping):
        for c, v in params.items():
            if hasattr(v, "detach") and hasattr(v, "cpu"):  # a torch tensor (gradients, any device)
                v = v.detach().cpu().numpy()
            arr = np.asarray(v) if not isinstance(v, (list, tuple)) else _column(v)
            cols[c] = arr
    elif isinstance(params, (list, tuple)):
        if not params:
            raise ValueError(f"{name} is empty")
        if not all(isinstance(r, Mapping) for r in params):
            raise TypeError(f"{name}: a list must hold one dict per row")
        keys = list(params[0].keys())
        for i, r in enumerate(params):
            if set(r.keys()) != set(keys):
                raise ValueError(f"{name}[{i}] has keys {sorted(map(str, r))} but {name}[0] has {sorted(map(str, keys))}")
        cols = {k: _column([r[k] for r in params]) for k in keys}
    else:
        raise TypeError(f"{name} must be a pandas DataFrame, a dict of columns or a list of dicts; "
                        f"got {type(params).__name__}")
    if not cols:
        raise ValueError(f"{name} has no columns")
    lengths = set()
    for c, v in cols.items():
        if not isinstance(c, str):
            raise TypeError(f"{name}: column names must be strings, got {c!r}")
        if v.ndim != 1:
            raise ValueError(f"{name}[{c!r}] must be 1-D; got shape {v.shape}")
        lengths.add(v.shape[0])
    if len(lengths) > 1:
        raise ValueError(f"{name}: columns have different lengths {sorted(lengths)}")
    return cols


def _column(values: list) -> np.ndarray:
    """A list -> a numeric array when every value is a real number, else an object array."""
    if all(isinstance(v, (numbers.Real, np.number)) and not isinstance(v, (bool, np.bool_)) for v in values):
        if all(isinstance(v, (numbers.Integral, np.integer)) for v in values):
            return np.asarray(values, dtype=np.int64)
        return np.asarray(values, dtype=np.float64)
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return np.asarray(values, dtype=bool)
    out = np.empty(len(values), dtype=object)
    out[:] = [_plain(v) for v in values]
    return out


def _is_numeric(col: np.ndarray) -> bool:
    return col.dtype.kind in "iuf"


def infer_space(table: Mapping[str, np.ndarray], name: str = "params") -> dict[str, Param]:
    """Types and ranges from the values: integer columns -> :class:`Int`, real
    columns -> :class:`Float` (``[min, max]``), anything else (strings, bools,
    objects) -> :class:`Categorical` of the distinct values (sorted when they sort)."""
    out: dict[str, Param] = {}
    for c, col in table.items():
        if col.shape[0] == 0:
            raise ValueError(f"{name} has 0 rows")
        if _is_numeric(col):
            if not np.isfinite(col.astype(np.float64)).all():
                raise ValueError(f"{name}[{c!r}] contains NaN or Inf")
            if col.dtype.kind in "iu":
                out[c] = Int(int(col.min()), int(col.max()))
            else:
                out[c] = Float(float(col.min()), float(col.max()))
        else:
            values = [_plain(v) for v in col.tolist()]
            seen = list(dict.fromkeys(values))
            try:
                seen = sorted(seen)
            except TypeError:
                pass
            out[c] = Categorical(seen)
    return out


def space_frame(cols: Mapping[str, Any], space: Mapping[str, Param], columns: Any = None):
    """A DataFrame of configurations whose categorical columns keep their
    choices as Python objects: pandas (>= 3) would otherwise store a column of
    strings and None as its ``str`` dtype, turning None into NaN."""
    import pandas as pd

    data = {}
    for key, col in cols.items():
        if isinstance(space.get(key), Categorical):
            values = np.empty(len(col), dtype=object)
            values[:] = list(col)
            data[key] = pd.Series(values, dtype=object)
        else:
            data[key] = col
    return pd.DataFrame(data, columns=columns)


def to_scale(values: np.ndarray, p: Any) -> np.ndarray:
    """Values of parameter ``p`` on the scale it is explored and smoothed on:
    ``log(values)`` for ``log=True``, the values themselves otherwise."""
    return np.log(values) if getattr(p, "log", False) else values


def from_scale(t: np.ndarray, p: Any) -> np.ndarray:
    """The inverse of :func:`to_scale`."""
    return np.exp(t) if getattr(p, "log", False) else t


def check_table(table: Mapping[str, np.ndarray], space: Mapping[str, Param], name: str = "params",
                space_name: str = "space") -> dict[str, np.ndarray]:
    """The space's columns of ``table``, checked against the declared types and bounds.

    Numeric columns come back as float64 (Int columns hold whole numbers);
    categorical columns as object arrays of the choices.
    """
    out: dict[str, np.ndarray] = {}
    if any(len(col) == 0 for col in table.values()):
        raise ValueError(f"{name} has no rows; give at least one configuration")
    for key, p in space.items():
        if key not in table:
            raise ValueError(f"{name} has no column {key!r} (declared in {space_name}); "
                             f"its columns are {list(table)}")
        col = table[key]
        where = f"{name}[{key!r}]"
        if isinstance(p, Categorical):
            values = np.empty(col.shape[0], dtype=object)
            values[:] = [_plain(v) for v in col.tolist()]
            bad = [v for v in dict.fromkeys(values.tolist()) if v not in p.choices]
            if bad:
                raise ValueError(f"{where} has values {bad[:5]} that are not among the choices "
                                 f"{list(p.choices)} of {space_name}[{key!r}]")
            out[key] = values
            continue
        if not _is_numeric(col):
            raise TypeError(f"{where} must be numeric for {space_name}[{key!r}] = {p}; got dtype {col.dtype}")
        v = col.astype(np.float64)
        if not np.isfinite(v).all():
            raise ValueError(f"{where} contains NaN or Inf")
        if isinstance(p, Int) and not np.all(v == np.round(v)):
            raise ValueError(f"{where} has non-integer values but {space_name}[{key!r}] is an Int")
        lo, hi = v.min(), v.max()
        # Rounding slack relative to the bounds' own size (an absolute one would
        # swallow ranges like [1e-12, 2e-10]); values within it are clipped in.
        slack = 1e-9 * max(abs(p.low), abs(p.high))
        if lo < p.low - slack or hi > p.high + slack:
            raise ValueError(f"{where} has values in [{lo:g}, {hi:g}], outside {space_name}[{key!r}] = "
                             f"[{p.low:g}, {p.high:g}]")
        out[key] = np.clip(v, p.low, p.high)
    return out


def sample_space(space: Any, n: int, *, seed: Any = 0):
    """Draw ``n`` configurations uniformly from a space (log-uniformly where ``log=True``).

    A design for a first generation round, whose samples :func:`simgap.recommend`
    can then reweight.

    Parameters
    ----------
    space : dict
        As accepted by :func:`as_space`.
    n : int
        Number of configurations.
    seed : int, default 0
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    pandas.DataFrame, shape (n, len(space))
        Int columns are int64, categorical columns hold the choices.

    Examples
    --------
    >>> import simgap
    >>> from simgap.space import sample_space
    >>> table = sample_space({"size": (1.0, 6.0), "n": simgap.Int(1, 5), "shape": ["a", "b"]}, 4, seed=0)
    >>> list(table.columns), table.shape
    (['size', 'n', 'shape'], (4, 3))
    """

    space = as_space(space)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for key, p in space.items():
        if isinstance(p, Categorical):
            idx = rng.integers(0, len(p.choices), size=n)
            col = np.empty(n, dtype=object)
            col[:] = [p.choices[i] for i in idx]
            cols[key] = col
        elif isinstance(p, Float):
            if p.log:
                cols[key] = np.exp(rng.uniform(np.log(p.low), np.log(p.high), size=n))
            else:
                cols[key] = rng.uniform(p.low, p.high, size=n)
        else:
            if p.log:
                u = np.exp(rng.uniform(np.log(p.low - 0.5), np.log(p.high + 0.5), size=n))
                cols[key] = np.clip(np.round(u), p.low, p.high).astype(np.int64)
            else:
                cols[key] = rng.integers(p.low, p.high + 1, size=n).astype(np.int64)
    return space_frame(cols, space)
