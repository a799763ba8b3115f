"""Where the explored configurations fall short of the real set, for
:func:`simgap.recommend`: real clusters that no synthetic sample reaches, and
weight that piles up at the edge of the explored range of a parameter.
"""

from __future__ import annotations

import math

import numpy as np

from ._util.arrays import take_rows, to_host
from .metrics import nearest_neighbors
from .space import from_scale, to_scale

__all__ = ["edge_warning", "unreached_real", "weighted_quantile"]

_EDGE_BAND = 0.1          # the top / bottom 10 % of explored configurations
_EDGE_RATIO = 2.0         # weight per configuration in the edge band, relative to uniform
_EDGE_STEP = 1.5          # ... and relative to the band next to it
_EDGE_Z = 2.0             # ... and that many standard errors above uniform
_UNREACHED_K = 5


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Quantiles of a weighted sample: the CDF through the midpoints of the weight steps."""
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    keep = w > 0
    v, w = v[keep], w[keep]
    cdf = np.cumsum(w) - 0.5 * w
    cdf /= w.sum()
    return np.interp(q, cdf, v)


def unreached_real(real: np.ndarray, syn: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Real rows that no synthetic sample reaches, grouped into clusters.

    Real row i is unreached when its nearest synthetic sample is more than twice
    as far as both (a) its k-th nearest real neighbour, k = clip(ceil(5 n / m), 5, 50)
    (the real spacing at a count that 5 synthetic neighbours would match), and (b)
    the median over real rows of the distance to the nearest synthetic sample
    (how densely the design covers the real set anywhere).  Unreached rows are
    joined into clusters when they are real neighbours (within each other's
    radius); clusters smaller than max(5, 2 % of the real rows) are dropped.
    """
    n, m = real.shape[0], syn.shape[0]
    k = int(min(50, max(_UNREACHED_K, math.ceil(_UNREACHED_K * n / m))))
    if n <= k + 1:
        return np.zeros(0, dtype=np.int64), []
    rd = to_host(nearest_neighbors(real, k=k)[0])
    radius = rd[:, -1]
    sd = to_host(nearest_neighbors(real, syn, k=1)[0])[:, 0]
    far = np.flatnonzero(sd > 2.0 * np.maximum(radius, np.median(sd)))
    min_size = max(5, int(math.ceil(0.02 * n)))
    if far.size < min_size:
        return np.zeros(0, dtype=np.int64), []
    pts = take_rows(real, far)
    kk = min(10, far.size - 1)
    dist, idx = (to_host(a) for a in nearest_neighbors(pts, k=kk))
    parent = np.arange(far.size)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    r = radius[far]
    for i in range(far.size):
        for d, j in zip(dist[i], idx[i]):
            if d <= max(r[i], r[j]):
                a, b = find(i), find(int(j))
                if a != b:
                    parent[a] = b
    roots = np.array([find(i) for i in range(far.size)])
    clusters = [far[roots == u] for u in np.unique(roots)]
    clusters = [c for c in clusters if c.size >= min_size]
    clusters.sort(key=lambda c: -c.size)
    rows = np.sort(np.concatenate(clusters)) if clusters else np.zeros(0, dtype=np.int64)
    return rows.astype(np.int64), clusters


def edge_warning(name, p, values, alpha, ess_configs) -> str | None:
    """Warn when the best region of a numeric parameter lies at the edge of the explored range.

    On the top (bottom) 10 % of the explored configurations (by rank, on the log
    scale for log parameters) the weight per configuration is compared with
    uniform weights.  Either test fires, when the excess is also >= 2 standard
    errors at the configurations' effective sample size:

    (a) the band's weight per configuration is >= 2x uniform and >= 1.5x that of
        the next band inward (the weighted density rises into the edge);
    (b) the weighted median lies in the outermost 15 % of the explored span.
    """
    t = to_scale(values, p)
    lo, hi = float(t.min()), float(t.max())
    if not hi > lo:
        return None
    med = float(weighted_quantile(t, alpha, np.array([0.5]))[0])
    for side in ("upward", "downward"):
        s = t if side == "upward" else -t
        s_lo = -hi if side == "downward" else lo
        span = hi - lo
        thr = np.quantile(s, 1.0 - _EDGE_BAND)
        top = s >= thr
        below = s[~top]
        if below.size == 0:
            continue
        thr2 = min(np.quantile(s, 1.0 - 2 * _EDGE_BAND), below.max())
        nxt = (~top) & (s >= thr2)
        u_top, u_next = top.mean(), nxt.mean()
        m_top, m_next = float(alpha[top].sum()), float(alpha[nxt].sum())
        r_top, r_next = m_top / u_top, m_next / u_next

        def z(mass, frac):
            return (mass - frac) / math.sqrt(max(frac * (1 - frac), 1e-12) / max(ess_configs, 1.0))

        rising = r_top >= _EDGE_RATIO and r_top >= _EDGE_STEP * r_next and z(m_top, u_top) >= _EDGE_Z
        s_med = med if side == "upward" else -med
        outer = s >= s_lo + 0.85 * span
        centred = (s_med - s_lo) >= 0.85 * span and z(float(alpha[outer].sum()), outer.mean()) >= _EDGE_Z
        if rising or centred:
            elo, ehi = float(values.min()), float(values.max())
            edge, bound = (ehi, p.high) if side == "upward" else (elo, p.low)
            at_bound = abs(edge - bound) <= 1e-9 * max(1.0, abs(bound))
            where = "the declared bound" if at_bound else f"the explored values (the space allows {bound:g})"
            part = "top" if side == "upward" else "bottom"
            return (f"extend the range of {name} {side}: {m_top:.0%} of the weight lies on the {part} "
                    f"{u_top:.0%} of the explored configurations (explored [{elo:g}, {ehi:g}], weighted "
                    f"median {float(from_scale(np.array(med), p)):g}); the best region may lie beyond {where}")
    return None
