"""The result of :func:`simgap.compare`: :class:`GapReport`, with its terminal
summary (rich), its JSON form (``to_dict`` / ``to_json``, versioned by
:data:`SCHEMA_VERSION`) and its self-contained offline HTML page (``to_html``,
rendered by :mod:`simgap._html`).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._html import render
from ._util.files import atomic_write_text

__all__ = ["GapReport", "SCHEMA_VERSION"]

#: Version of the ``to_dict`` / ``to_json`` layout; bumped on incompatible changes.
SCHEMA_VERSION = "simgap.gap_report/1"


def _plain(v: Any) -> Any:
    """A JSON-safe Python value: numpy scalars unwrapped, NaN and +-inf as None."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if v is None or isinstance(v, (int, str)):
        return v
    if hasattr(v, "item") and callable(v.item):
        try:
            return _plain(v.item())
        except (ValueError, TypeError):
            pass
    return str(v)


def _records(df) -> list[dict] | None:
    if df is None:
        return None
    return [{str(k): _plain(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def _auc_reading(auc: float) -> str:
    if not math.isfinite(auc):
        return "n/a"
    if auc < 0.55:
        return "indistinguishable"
    if auc < 0.7:
        return "slightly distinguishable"
    if auc < 0.9:
        return "clearly distinguishable"
    return "trivially distinguishable"


@dataclass
class GapReport:
    """Everything :func:`simgap.compare` found; tables are pandas DataFrames.

    Attributes
    ----------
    n_real, n_synthetic, dim : int
    mmd2 : float
        Unbiased MMD^2 (gaussian kernel, median bandwidth ``settings["bandwidth"]``).
    mmd2_ci : (float, float)
        Percentile bootstrap interval at ``settings["ci_level"]``.
    mmd2_stderr : float
        Standard deviation of the bootstrap replicates.
    mmd2_block : dict or None
        Block estimate on all rows (value, stderr, block_size) when the size
        threshold was exceeded.
    p_value : float
        Permutation-test p-value (:func:`simgap.mmd_test`).
    swd, fd : float
        Sliced Wasserstein-2 and Frechet distances.
    prdc : dict
        precision, recall, density, coverage (k = ``settings["k"]``).
    c2st_auc, c2st_auc_std : float
        Cross-validated logistic-regression AUC (0.5: indistinguishable).
    clusters : DataFrame
        One row per cluster: counts, shares, ratio, Fisher p-value, verdict,
        mean witness and realistic rate of its synthetic members.
    synthetic_scores : DataFrame
        One row per synthetic sample: id, row (its row in the input; with
        ``group``, the global row), witness, realism (Kynkaanniemi et al.),
        realistic (realism >= 1), p_real (out-of-fold classifier probability),
        cluster.
    real_coverage : DataFrame
        One row per real sample (of the exact-size subsample): id, covered,
        nn_distance, radius, nearest_synthetic, witness, cluster.
    parameter_importance : DataFrame or None
        parameter, kind, importance, importance_std, share, significant,
        direction; sorted by importance.
    parameter_profiles : dict of DataFrame or None
        Per parameter, realism per bin / value with counts and 95% intervals.
    parameter_r2 : float or None
        Held-out R^2 of the forest predicting the witness from the parameters.
    per_class : DataFrame or None
    directions : DataFrame
        Latent directions ranked by the 1-D Wasserstein distance between the
        projected sets; ``direction_vectors`` holds the unit vectors, same order.
    map : DataFrame
        2-D coordinates of the plotted subsample (x, y, set, index, cluster, id).
    approximations, notes : list of str
    settings : dict
    """

    n_real: int
    n_synthetic: int
    dim: int
    mmd2: float
    mmd2_ci: tuple
    mmd2_stderr: float
    mmd2_block: dict | None
    p_value: float
    swd: float
    fd: float
    prdc: dict
    c2st_auc: float
    c2st_auc_std: float
    clusters: Any
    synthetic_scores: Any
    real_coverage: Any
    parameter_importance: Any = None
    parameter_profiles: dict | None = None
    parameter_r2: float | None = None
    params: Any = field(default=None, repr=False)
    per_class: Any = None
    directions: Any = None
    direction_vectors: np.ndarray | None = field(default=None, repr=False)
    map: Any = field(default=None, repr=False)
    approximations: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"GapReport(n_real={self.n_real}, n_synthetic={self.n_synthetic}, mmd2={self.mmd2:.4g}, "
                f"p_value={self.p_value:.3g}, c2st_auc={self.c2st_auc:.3f}, clusters={len(self.clusters)})")

    # -- ranked lists ---------------------------------------------------------

    def least_realistic(self, n: int = 10):
        """The n synthetic samples with the lowest witness (most unlike real data)."""
        return self.synthetic_scores.sort_values("witness", kind="stable").head(n)

    def coverage_holes(self, n: int | None = None):
        """Real samples that no synthetic sample covers, the most isolated first."""
        holes = self.real_coverage[~self.real_coverage["covered"]]
        holes = holes.assign(_gap=holes["nn_distance"] / holes["radius"].where(holes["radius"] > 0, 1.0))
        holes = holes.sort_values("_gap", ascending=False, kind="stable").drop(columns="_gap")
        return holes if n is None else holes.head(n)

    # -- plain data -----------------------------------------------------------

    def to_dict(self) -> dict:
        """Everything as JSON-serialisable plain data (NaN and infinities become None)."""
        vecs = None if self.direction_vectors is None else np.asarray(self.direction_vectors).tolist()
        return _plain({
            "schema_version": SCHEMA_VERSION,
            "n_real": self.n_real,
            "n_synthetic": self.n_synthetic,
            "dim": self.dim,
            "mmd2": self.mmd2,
            "mmd2_ci": list(self.mmd2_ci),
            "mmd2_stderr": self.mmd2_stderr,
            "mmd2_block": self.mmd2_block,
            "p_value": self.p_value,
            "swd": self.swd,
            "fd": self.fd,
            "prdc": dict(self.prdc),
            "c2st_auc": self.c2st_auc,
            "c2st_auc_std": self.c2st_auc_std,
            "clusters": _records(self.clusters),
            "synthetic_scores": _records(self.synthetic_scores),
            "real_coverage": _records(self.real_coverage),
            "parameter_importance": _records(self.parameter_importance),
            "parameter_profiles": None if self.parameter_profiles is None else {
                k: _records(v) for k, v in self.parameter_profiles.items()},
            "parameter_r2": self.parameter_r2,
            "per_class": _records(self.per_class),
            "directions": _records(self.directions),
            "direction_vectors": vecs,
            "map": _records(self.map),
            "approximations": list(self.approximations),
            "notes": list(self.notes),
            "settings": self.settings,
        }) | {"schema_version": SCHEMA_VERSION}

    def to_json(self, path: Any = None, *, indent: int | None = 1) -> str:
        """The :meth:`to_dict` content as JSON; written atomically to ``path`` when given.

        Returns the JSON text.
        """
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False, ensure_ascii=False)
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text

    def to_html(self, path: Any, *, images: Any = None, title: str = "simgap domain-gap report",
                max_rows: int = 20) -> str:
        """Write one self-contained HTML page (no network, no CDN), atomically.

        Parameters
        ----------
        path : str or os.PathLike
        images : optional
            Thumbnails: a pair (real_images, synthetic_images) or a dict with keys
            "real" / "synthetic", or synthetic images alone.  Each is a
            sequence or array of images indexed like the input rows: arrays
            (H, W), (H, W, 3) or (H, W, 4) (uint8, or floats in [0, 1]), PNG/JPEG
            bytes, or paths to image files.
        title : str
        max_rows : int, default 20
            Rows of the ranked sample lists.

        Returns
        -------
        str
            The path written.
        """
        return atomic_write_text(path, render(self, images=images, title=title, max_rows=max_rows))

    # -- terminal -------------------------------------------------------------

    def _tables(self):
        from rich.markup import escape
        from rich.table import Table

        t = Table(title=f"simgap: {self.n_synthetic} synthetic vs {self.n_real} real ({self.dim}-d)",
                  title_justify="left")
        t.add_column("metric")
        t.add_column("value", justify="right")
        t.add_column("reading")
        lo, hi = self.mmd2_ci
        level = self.settings.get("ci_level", 0.95)
        t.add_row("MMD²", f"{self.mmd2:.4g}", f"{level:.0%} CI [{lo:.4g}, {hi:.4g}]")
        t.add_row("p-value", f"{self.p_value:.3g}",
                  f"{self.settings.get('n_permutations', '?')} permutations; "
                  + ("gap is significant" if self.p_value < 0.05 else "no significant gap"))
        t.add_row("C2ST AUC", f"{self.c2st_auc:.3f}", _auc_reading(self.c2st_auc) + " (0.5 = indistinguishable)")
        t.add_row("sliced W2", f"{self.swd:.4g}", "")
        t.add_row("Fréchet", f"{self.fd:.4g}", "")
        for key in ("precision", "recall", "density", "coverage"):
            t.add_row(key, f"{self.prdc[key]:.3f}", "")
        out = [t]
        c = Table(title="clusters", title_justify="left")
        for col in ("cluster", "real", "synthetic", "ratio", "verdict"):
            c.add_column(col, justify="right" if col != "verdict" else "left")
        for row in self.clusters.itertuples(index=False):
            c.add_row(str(row.cluster), f"{row.share_real:.1%}", f"{row.share_synthetic:.1%}",
                      "∞" if not math.isfinite(row.ratio) else f"{row.ratio:.2f}", escape(str(row.verdict)))
        out.append(c)
        if self.parameter_importance is not None:
            p = Table(title="parameters (by importance)", title_justify="left")
            p.add_column("parameter")
            p.add_column("importance", justify="right")
            p.add_column("direction")
            for row in self.parameter_importance.head(8).itertuples(index=False):
                # user strings (parameter names, values) are text, not rich markup
                p.add_row(escape(str(row.parameter)), f"{row.importance:.3f}", escape(row.direction or "-"))
            out.append(p)
        return out

    def summary_text(self, width: int = 100) -> str:
        """The :meth:`summary` as plain text."""
        from rich.console import Console

        buf = io.StringIO()
        console = Console(file=buf, width=width, color_system=None, force_terminal=False)
        self._print(console)
        return buf.getvalue()

    def _print(self, console) -> None:
        from rich.markup import escape

        for t in self._tables():
            console.print(t)
        for a in self.approximations:
            console.print(f"approximation: {escape(a)}")
        for note in self.notes:
            console.print(f"note: {escape(note)}")

    def summary(self, file: Any = None) -> None:
        """Print a compact summary table to the terminal (or to ``file``)."""
        from rich.console import Console

        self._print(Console(file=file))
