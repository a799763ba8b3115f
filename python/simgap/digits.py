"""A procedural simulator of handwritten-looking digits, the synthetic side of ``simgap demo``.

Each digit class is a few strokes (lines, elliptic arcs, quadratic Bézier curves) in a template
frame, x in [-0.5, 0.5] and y in [-1, 1] (y up).  A sample is drawn by deforming its class
template, slanting, scaling and shifting it onto a 32 × 32 canvas, painting the strokes with an
anti-aliased pen of a given width, blurring, then summing 4 × 4 blocks into 8 × 8 counts, adding
noise and quantising to the integers 0..16 — the format of scikit-learn's bundled handwritten
digits (:func:`sklearn.datasets.load_digits`, the real data of the demo), whose 8 × 8 values are
the counts of set pixels in 4 × 4 blocks of 32 × 32 bitmaps.

Parameters, one value per sample (:data:`PARAMETERS` gives each one's valid range):

============  ======================================================================
stroke_width  pen width in pixels of the 32 × 32 canvas
slant         horizontal shear, x += slant · y (positive leans right)
scale         height of the digit as a fraction of the canvas (1 fills 28 of 32 rows)
aspect        width stretch (1 keeps the template's width, half its height)
shift         standard deviation, in canvas pixels, of a random offset of the digit
wobble        size of a smooth random deformation of the strokes (shape jitter)
blur          standard deviation, in canvas pixels, of a gaussian blur before binning
noise         standard deviation of gaussian noise added to the 0..16 values
contrast      gain on the 0..16 values before quantisation (1 paints strokes at 16)
============  ======================================================================

A *configuration* is a range ``(low, high)`` per parameter; :func:`sample_params` draws the
per-sample values uniformly inside it.  :data:`DEFAULT_CONFIG` is deliberately poor (thin, small,
off-centre, blurred, noisy, faint digits): it is where the demo starts.

Examples
--------
>>> import numpy as np
>>> from simgap import digits
>>> images, labels, params = digits.make_digits(20, seed=0)
>>> images.shape, images.dtype, float(images.min()) >= 0, float(images.max()) <= 16
((20, 8, 8), dtype('float32'), True, True)
>>> bool(np.all(images == np.round(images)))
True
>>> sorted(params) == sorted(digits.PARAMETERS)
True
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = [
    "DEFAULT_CONFIG",
    "PARAMETERS",
    "config_center",
    "load_real_digits",
    "make_digits",
    "render_digits",
    "sample_params",
]

#: Valid range of each per-sample parameter, ``name -> (low, high)``.
PARAMETERS: dict[str, tuple[float, float]] = {
    "stroke_width": (0.5, 7.0),
    "slant": (-0.8, 0.8),
    "scale": (0.3, 1.2),
    "aspect": (0.5, 2.0),
    "shift": (0.0, 6.0),
    "wobble": (0.0, 0.4),
    "blur": (0.0, 3.0),
    "noise": (0.0, 4.0),
    "contrast": (0.2, 1.6),
}

#: The deliberately poor starting configuration of the demo, ``name -> (low, high)``.
DEFAULT_CONFIG: dict[str, tuple[float, float]] = {
    "stroke_width": (2.0, 3.0),
    "slant": (-0.45, -0.25),
    "scale": (0.7, 0.8),
    "aspect": (0.7, 0.9),
    "shift": (0.5, 1.5),
    "wobble": (0.0, 0.05),
    "blur": (0.5, 1.0),
    "noise": (0.3, 0.8),
    "contrast": (0.5, 0.7),
}

_CANVAS = 32  # pixels of the hi-res canvas; 8 × 8 output bins of 4 × 4
_BIN = 4
_HALF_HEIGHT = 14.0  # canvas pixels from the centre to the top of a scale-1 digit
_POINTS_PER_CURVE = 12


# --------------------------------------------------------------------------- templates


def _line(p0, p1):
    return np.array([p0, p1], dtype=np.float64)


def _arc(cx, cy, rx, ry, a0, a1, n=_POINTS_PER_CURVE):
    """Elliptic arc from angle a0 to a1 (degrees, counter-clockwise positive)."""
    t = np.deg2rad(np.linspace(a0, a1, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _bezier(p0, c, p1, n=_POINTS_PER_CURVE):
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, c, p1 = (np.asarray(v, dtype=np.float64) for v in (p0, c, p1))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * c + t**2 * p1


def _chain(*parts):
    """Join polylines end to start into one stroke."""
    return np.concatenate(parts, axis=0)


def _templates() -> list[list[np.ndarray]]:
    """Strokes (polylines, (k, 2) arrays) of each digit class 0..9."""
    return [
        [_arc(0.0, 0.0, 0.42, 0.9, 90, 450, 24)],
        [_chain(_line((-0.22, 0.6), (0.02, 0.9)), _line((0.02, 0.9), (0.0, -0.9)))],
        [
            _chain(
                _arc(0.0, 0.45, 0.4, 0.45, 160, -20),
                _line((0.376, 0.296), (-0.45, -0.9)),
                _line((-0.45, -0.9), (0.47, -0.9)),
            )
        ],
        [_arc(0.0, 0.47, 0.38, 0.43, 150, -90), _arc(0.0, -0.44, 0.44, 0.46, 90, -150)],
        [
            _chain(_line((-0.3, 0.9), (-0.42, -0.2)), _line((-0.42, -0.2), (0.48, -0.2))),
            _line((0.24, 0.6), (0.24, -0.9)),
        ],
        [
            _chain(
                _line((0.42, 0.9), (-0.34, 0.9)),
                _line((-0.34, 0.9), (-0.38, 0.12)),
                _arc(0.0, -0.38, 0.44, 0.52, 125, -150, 16),
            )
        ],
        [_chain(_bezier((0.32, 0.9), (-0.5, 0.55), (-0.42, -0.42)),
                _arc(0.0, -0.45, 0.42, 0.45, 180, -180, 20))],
        [_chain(_line((-0.45, 0.9), (0.45, 0.9)), _bezier((0.45, 0.9), (0.1, 0.0), (-0.05, -0.9)))],
        [_arc(0.0, 0.48, 0.34, 0.42, -90, 270, 20), _arc(0.0, -0.45, 0.42, 0.47, 90, 450, 20)],
        [_arc(0.0, 0.42, 0.4, 0.46, 0, 360, 20),
         _bezier((0.4, 0.42), (0.42, -0.3), (0.22, -0.9))],
    ]


def _segment_table() -> list[np.ndarray]:
    """Per class, the (S, 2, 2) start and end points of its stroke segments."""
    return [
        np.concatenate([np.stack([s[:-1], s[1:]], axis=1) for s in strokes], axis=0)
        for strokes in _templates()
    ]


# The distance field of each class template on a fine grid of the template frame, computed once.
_FIELD_X = (-1.8, 1.8)
_FIELD_Y = (-2.4, 2.4)
_FIELD_STEP = 0.02
_FIELD: np.ndarray | None = None


def _distance_fields() -> np.ndarray:
    """(10, H, W) float32 distance, in template units, from grid points to each class's strokes.

    Far points are clamped to the border, whose distance to any stroke exceeds the widest pen's
    reach at the smallest scale, so clamping never paints ink.
    """
    global _FIELD
    if _FIELD is None:
        xs = np.arange(_FIELD_X[0], _FIELD_X[1] + 1e-9, _FIELD_STEP)
        ys = np.arange(_FIELD_Y[0], _FIELD_Y[1] + 1e-9, _FIELD_STEP)
        gx, gy = np.meshgrid(xs, ys, indexing="xy")
        pts = np.stack([gx.ravel(), gy.ravel()], axis=1)  # (G, 2)
        fields = []
        for segs in _segment_table():
            a, b = segs[:, 0], segs[:, 1]  # (S, 2)
            ab = b - a
            len2 = np.maximum(np.sum(ab * ab, axis=1), 1e-12)
            best = np.full(pts.shape[0], np.inf)
            for k in range(a.shape[0]):  # one segment at a time: O(G) memory
                ap = pts - a[k]
                t = np.clip(ap @ ab[k] / len2[k], 0.0, 1.0)
                d = ap - t[:, None] * ab[k]
                np.minimum(best, np.einsum("gk,gk->g", d, d), out=best)
            fields.append(np.sqrt(best).reshape(gy.shape))
        _FIELD = np.stack(fields).astype(np.float32)
    return _FIELD


# --------------------------------------------------------------------------- parameters


def _param_column(params: Any, name: str) -> Any:
    try:
        return params[name]
    except (KeyError, IndexError, ValueError):
        return None


def _as_param_table(params: Any, n: int) -> dict[str, np.ndarray]:
    """Per-sample parameter arrays of length n from a mapping, a data frame or a list of mappings.

    Missing parameters take the middle of the default configuration; scalars are broadcast.
    """
    if params is None:
        params = {}
    if isinstance(params, (list, tuple)):
        if len(params) != n:
            raise ValueError(f"params has {len(params)} rows but there are {n} samples")
        params = {k: np.array([row[k] for row in params]) for k in (params[0] if params else {})}
    if not hasattr(params, "keys"):
        raise TypeError(
            f"params must be a mapping or a data frame of parameter columns, not {type(params).__name__}"
        )
    unknown = sorted(str(k) for k in params.keys() if k not in PARAMETERS)
    if unknown:
        raise ValueError(f"unknown digit parameters {unknown}; known: {list(PARAMETERS)}")
    table = {}
    for name, (low, high) in PARAMETERS.items():
        col = _param_column(params, name)
        if col is None:
            col = config_center()[name]
        col = np.asarray(col, dtype=np.float64)
        if col.ndim == 0:
            col = np.full(n, float(col))
        if col.shape != (n,):
            raise ValueError(f"parameter {name!r} has shape {col.shape} but there are {n} samples")
        if not np.all(np.isfinite(col)):
            raise ValueError(f"parameter {name!r} has non-finite values")
        bad = (col < low - 1e-9) | (col > high + 1e-9)
        if np.any(bad):
            raise ValueError(
                f"parameter {name!r} must lie in [{low}, {high}]; got {col[bad][0]:g}"
            )
        table[name] = col
    return table


def config_center(config: Mapping[str, tuple[float, float]] | None = None) -> dict[str, float]:
    """The middle of each parameter's range in ``config`` (default :data:`DEFAULT_CONFIG`)."""
    config = DEFAULT_CONFIG if config is None else config
    return {k: 0.5 * (float(lo) + float(hi)) for k, (lo, hi) in config.items()}


def sample_params(
    n: int, config: Mapping[str, tuple[float, float]] | None = None, *, seed: int = 0
) -> dict[str, np.ndarray]:
    """Per-sample parameters drawn uniformly inside the ranges of a configuration.

    Parameters
    ----------
    n : int
        Number of samples.
    config : mapping, optional
        ``name -> (low, high)`` for some or all of :data:`PARAMETERS`; a parameter it leaves out is
        drawn from :data:`DEFAULT_CONFIG`.  Each range must lie inside the parameter's valid range.
    seed : int, default 0

    Returns
    -------
    dict of str to ndarray of shape (n,)
    """
    full = dict(DEFAULT_CONFIG)
    if config is not None:
        unknown = sorted(set(config) - set(PARAMETERS))
        if unknown:
            raise ValueError(f"unknown digit parameters {unknown}; known: {list(PARAMETERS)}")
        full.update(config)
    rng = np.random.default_rng(seed)
    out = {}
    for name, (vlow, vhigh) in PARAMETERS.items():
        low, high = (float(v) for v in full[name])
        if not (vlow <= low <= high <= vhigh):
            raise ValueError(
                f"range of {name!r} must satisfy {vlow} <= low <= high <= {vhigh}; got ({low}, {high})"
            )
        out[name] = rng.uniform(low, high, size=n)
    return out


# --------------------------------------------------------------------------- rendering


def _gaussian_matrices(sigma: np.ndarray, size: int) -> np.ndarray:
    """(n, size, size) row-normalised gaussian blur matrices; sigma ≈ 0 gives the identity."""
    idx = np.arange(size, dtype=np.float64)
    diff2 = (idx[:, None] - idx[None, :]) ** 2
    s = np.maximum(sigma, 1e-3)[:, None, None]
    g = np.exp(-diff2[None] / (2.0 * s * s))
    return g / g.sum(axis=2, keepdims=True)


def _render_block(labels, p, rng) -> np.ndarray:
    """(n, 32, 32) stroke intensity in [0, 1] after blur; p holds the block's parameter arrays.

    Every canvas pixel is mapped back into its class's template frame (undoing shift, scale,
    slant and a smooth random deformation of size ``wobble``), where the distance to the strokes
    is read from the precomputed field and converted back to canvas pixels to paint the pen.
    """
    fields = _distance_fields()
    n = labels.shape[0]
    centre = (_CANVAS - 1) / 2.0
    idx = np.arange(_CANVAS, dtype=np.float64)
    col = np.broadcast_to(idx[None, :], (_CANVAS, _CANVAS)).reshape(1, -1)
    row = np.broadcast_to(idx[:, None], (_CANVAS, _CANVAS)).reshape(1, -1)
    offset = rng.normal(size=(n, 2)) * p["shift"][:, None]
    s = (p["scale"] * _HALF_HEIGHT)[:, None]  # canvas pixels per template unit
    v = -(row - centre - offset[:, 1:2]) / s
    u = ((col - centre - offset[:, 0:1]) / s - p["slant"][:, None] * v) / p["aspect"][:, None]
    # Smooth random deformation: a random affine plus quadratic displacement field.
    basis = np.stack([u, v, u * v, u * u - 0.1, v * v - 0.4], axis=-1)  # (n, P, 5)
    coef = rng.normal(size=(n, 2, 5)) * np.array([0.6, 0.6, 0.5, 0.4, 0.4])
    w = p["wobble"][:, None]
    x = u + w * np.einsum("npk,nk->np", basis, coef[:, 0])
    y = v + w * np.einsum("npk,nk->np", basis, coef[:, 1])
    # Bilinear lookup in the distance field, clamped at its border.
    h, wd = fields.shape[1:]
    fx = np.clip((x - _FIELD_X[0]) / _FIELD_STEP, 0.0, wd - 1.001)
    fy = np.clip((y - _FIELD_Y[0]) / _FIELD_STEP, 0.0, h - 1.001)
    x0 = fx.astype(np.int64)
    y0 = fy.astype(np.int64)
    tx, ty = fx - x0, fy - y0
    flat = fields.reshape(-1)
    base = labels[:, None] * (h * wd) + y0 * wd + x0

    def at(offs):
        return flat[base + offs]

    dist = (at(0) * (1 - tx) + at(1) * tx) * (1 - ty) + (at(wd) * (1 - tx) + at(wd + 1) * tx) * ty
    dist_px = dist * s
    ink = np.clip(p["stroke_width"][:, None] / 2.0 - dist_px + 0.5, 0.0, 1.0)
    img = ink.reshape(n, _CANVAS, _CANVAS)
    g = _gaussian_matrices(p["blur"], _CANVAS)
    return g @ img @ np.transpose(g, (0, 2, 1))


def render_digits(
    labels: Any, params: Any = None, *, seed: int = 0, hires: bool = False
) -> np.ndarray:
    """Render one digit per label with its own parameters.

    Parameters
    ----------
    labels : array_like of int, shape (n,)
        Digit classes, 0..9.
    params : mapping or data frame, optional
        A value or an array of n values per parameter (see :data:`PARAMETERS`); a parameter left out
        takes the middle of :data:`DEFAULT_CONFIG`.
    seed : int, default 0
        Seeds the random deformation, offset and noise: the same labels, parameters and seed give
        the same images.
    hires : bool, default False
        Return the blurred 32 × 32 canvases in [0, 1] instead (no binning, contrast or noise).

    Returns
    -------
    ndarray of float32, shape (n, 8, 8)
        Integer values 0..16, as ``sklearn.datasets.load_digits().images``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional; got shape {labels.shape}")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 9):
        raise ValueError("labels must be integers in 0..9")
    n = labels.shape[0]
    p = _as_param_table(params, n)
    rng = np.random.default_rng(seed)
    size = _CANVAS if hires else _CANVAS // _BIN
    out = np.empty((n, size, size), dtype=np.float32)
    block = 512  # bounds the (block, 1024, 5) temporaries to a few tens of MB
    for i in range(0, n, block):
        sl = slice(i, min(i + block, n))
        pb = {k: v[sl] for k, v in p.items()}
        img = _render_block(labels[sl].astype(np.int64), pb, rng)
        if hires:
            out[sl] = img
            continue
        m = img.shape[0]
        counts = img.reshape(m, 8, _BIN, 8, _BIN).sum(axis=(2, 4))  # 0..16, like the real bitmaps
        counts = counts * pb["contrast"][:, None, None]
        counts = counts + rng.normal(size=counts.shape) * pb["noise"][:, None, None]
        out[sl] = np.clip(np.round(counts), 0, 16)
    return out


def make_digits(
    n: int,
    config: Mapping[str, tuple[float, float]] | None = None,
    *,
    params: Any = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A class-balanced synthetic set: images, labels and the parameters of each sample.

    Parameters
    ----------
    n : int
        Number of digits; the classes 0..9 take turns, so every class has n // 10 or one more.
    config : mapping, optional
        Ranges to draw the per-sample parameters from (:func:`sample_params`); default
        :data:`DEFAULT_CONFIG`.  Ignored when ``params`` is given.
    params : mapping or data frame, optional
        Explicit per-sample parameters (n rows), e.g. configurations sampled from a recommendation.
    seed : int, default 0

    Returns
    -------
    images : ndarray of float32, shape (n, 8, 8), values 0..16
    labels : ndarray of int64, shape (n,)
    params : dict of str to ndarray of shape (n,)
    """
    if n < 0:
        raise ValueError(f"n must be non-negative; got {n}")
    seq = np.random.SeedSequence(seed)
    s_params, s_labels, s_render = (int(s.generate_state(1)[0]) for s in seq.spawn(3))
    labels = np.random.default_rng(s_labels).permutation(np.arange(n) % 10).astype(np.int64)
    table = sample_params(n, config, seed=s_params) if params is None else _as_param_table(params, n)
    images = render_digits(labels, table, seed=s_render)
    return images, labels, table


def load_real_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled handwritten digits: (1797, 8, 8) float32 images 0..16 and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)
