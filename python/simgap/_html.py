"""Self-contained HTML rendering of a GapReport: inline SVG drawn here, a few
lines of inline JavaScript, no external resource of any kind.  Every piece of
user-provided text (ids, parameter names and values, labels, title) goes
through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import math
import os
import struct
import zlib
from typing import Any, Mapping

import numpy as np

_REAL = "#1f77b4"
_SYN = "#ff7f0e"
_VERDICT_COLOURS = {
    "missing": "#d62728", "under-represented": "#ff9896", "balanced": "#98df8a",
    "over-represented": "#ffbb78", "synthetic-only": "#9467bd",
}
_CLUSTER_COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                    "#ff9da7", "#9c755f", "#bab0ac"]


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _num(v: Any, fmt: str = ".4g") -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return esc(v)
    if math.isnan(f):
        return "–"
    if math.isinf(f):
        return "∞" if f > 0 else "-∞"
    return format(f, fmt)


# ----------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------


def _png(arr: np.ndarray) -> bytes:
    """Minimal PNG encoder (8-bit grey, RGB or RGBA), no dependency."""
    a = np.asarray(arr)
    if a.dtype.kind == "f":
        a = np.clip(np.nan_to_num(a), 0.0, 1.0) * 255.0 + 0.5
    a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        colour, a3 = 0, a[:, :, None]
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        colour, a3 = (2 if a.shape[2] == 3 else 6), a
    else:
        raise ValueError(f"images: an image array must be (H, W), (H, W, 3) or (H, W, 4); got shape {a.shape}")
    # thumbnails: at most ~128 px on the long side (strided)
    step = max(1, int(math.ceil(max(a3.shape[:2]) / 128)))
    a3 = np.ascontiguousarray(a3[::step, ::step])
    h, w, c = a3.shape
    raw = b"".join(b"\x00" + a3[i].tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def _data_uri(img: Any) -> str | None:
    if img is None:
        return None
    if isinstance(img, (str, os.PathLike)):
        p = os.fspath(img)
        ext = os.path.splitext(p)[1].lower()
        mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                ".webp": "image/webp"}.get(ext)
        if mime is None:
            raise ValueError(f"images: unsupported image file type {ext!r} ({p!r})")
        with open(p, "rb") as fh:
            data = fh.read()
    elif isinstance(img, (bytes, bytearray)):
        data = bytes(img)
        mime = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    else:
        if hasattr(img, "detach"):
            img = img.detach().cpu().numpy()
        a = np.asarray(img)
        if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
            a = np.moveaxis(a, 0, -1)  # CHW -> HWC
        data, mime = _png(a), "image/png"
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _split_images(images: Any) -> tuple[Any, Any]:
    if images is None:
        return None, None
    if isinstance(images, Mapping):
        unknown = set(images) - {"real", "synthetic"}
        if unknown:
            raise ValueError(f"images: unknown keys {sorted(map(str, unknown))}; use 'real' and 'synthetic'")
        return images.get("real"), images.get("synthetic")
    if isinstance(images, tuple) and len(images) == 2:
        return images
    return None, images


def _thumb(images: Any, index: int, name: str) -> str:
    if images is None:
        return ""
    try:
        img = images[index]
    except (IndexError, KeyError):
        raise ValueError(f"images: {name} images have no entry for row {index}") from None
    uri = _data_uri(img)
    return f'<img class="thumb" alt="{esc(name)} {index}" src="{uri}">' if uri else ""


# ----------------------------------------------------------------------------
# SVG pieces
# ----------------------------------------------------------------------------


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (Andrew's monotone chain), counter-clockwise."""
    pts = sorted(set(map(tuple, points.tolist())))
    if len(pts) <= 2:
        return np.array(pts)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def _map_svg(report, width: int = 640, height: int = 480) -> str:
    df = report.map
    if df is None or len(df) == 0:
        return "<p>No map.</p>"
    pad = 20
    x, y = df["x"].to_numpy(dtype=float), df["y"].to_numpy(dtype=float)
    x0, x1 = float(x.min()), float(x.max())
    y0, y1 = float(y.min()), float(y.max())
    sx = (width - 2 * pad) / (x1 - x0 if x1 > x0 else 1.0)
    sy = (height - 2 * pad) / (y1 - y0 if y1 > y0 else 1.0)
    X = pad + (x - x0) * sx
    Y = height - pad - (y - y0) * sy
    params = report.params
    parts = [f'<svg id="map" class="plot" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="2-D map of the latent space">',
             f'<rect width="{width}" height="{height}" fill="#fff"/>']
    clusters = df["cluster"].to_numpy()
    for c in np.unique(clusters):
        mask = clusters == c
        hull = _hull(np.column_stack([X[mask], Y[mask]]))
        colour = _CLUSTER_COLOURS[int(c) % len(_CLUSTER_COLOURS)]
        if len(hull) >= 3:
            pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in hull)
            parts.append(f'<polygon class="hull" points="{pts}" fill="{colour}" fill-opacity="0.06" '
                         f'stroke="{colour}" stroke-width="1.5" stroke-dasharray="4 3"><title>cluster {int(c)}</title></polygon>')
        cx, cy = float(X[mask].mean()), float(Y[mask].mean())
        parts.append(f'<text class="clabel" x="{cx:.1f}" y="{cy:.1f}" fill="{colour}">C{int(c)}</text>')
    sets = df["set"].to_numpy()
    ids = df["id"].to_numpy()
    idx = df["index"].to_numpy()
    for i in range(len(df)):
        real = sets[i] == "real"
        tip = f"{sets[i]} id={ids[i]} (cluster {int(clusters[i])})"
        if not real and params is not None:
            row = params.loc[int(idx[i])]  # indexed by input row (distributed: the subsample's global rows)
            tip += "\n" + "\n".join(f"{k} = {v}" for k, v in row.items())
        parts.append(f'<circle class="pt {"real" if real else "syn"}" cx="{X[i]:.1f}" cy="{Y[i]:.1f}" r="2.6" '
                     f'fill="{_REAL if real else _SYN}" fill-opacity="0.55"><title>{esc(tip)}</title></circle>')
    parts.append(f'<g font-size="12"><circle cx="{width - 200}" cy="14" r="5" fill="{_REAL}"/>'
                 f'<text x="{width - 190}" y="18">real</text><circle cx="{width - 140}" cy="14" r="5" fill="{_SYN}"/>'
                 f'<text x="{width - 130}" y="18">synthetic</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _cluster_bars(report, width: int = 640) -> str:
    df = report.clusters
    k = len(df)
    row_h = 34
    height = 30 + k * row_h
    left, right = 60, 180
    scale = (width - left - right) / max(1e-12, float(max(df["share_real"].max(), df["share_synthetic"].max())))
    parts = [f'<svg id="cluster-bars" class="plot" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="cluster shares">',
             f'<rect width="{width}" height="{height}" fill="#fff"/>']
    for i, row in enumerate(df.itertuples(index=False)):
        y = 20 + i * row_h
        wr, ws = row.share_real * scale, row.share_synthetic * scale
        colour = _VERDICT_COLOURS.get(row.verdict, "#ccc")
        parts.append(f'<text x="8" y="{y + 16}" font-size="12">C{int(row.cluster)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{wr:.1f}" height="12" fill="{_REAL}">'
                     f'<title>real {row.n_real} ({row.share_real:.1%})</title></rect>')
        parts.append(f'<rect x="{left}" y="{y + 13}" width="{ws:.1f}" height="12" fill="{_SYN}">'
                     f'<title>synthetic {row.n_synthetic} ({row.share_synthetic:.1%})</title></rect>')
        parts.append(f'<rect x="{width - right + 10}" y="{y + 2}" width="12" height="20" fill="{colour}"/>'
                     f'<text x="{width - right + 28}" y="{y + 16}" font-size="12">{esc(row.verdict)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _param_svg(name: str, prof, width: int = 420, height: int = 180) -> str:
    """Mean witness per bin with 95% intervals; bar widths follow counts."""
    pad_l, pad_b, pad_t = 50, 40, 10
    k = len(prof)
    if k == 0:
        return ""
    mu = prof["mean_score"].to_numpy(dtype=float)
    lo = np.where(np.isfinite(prof["ci_low"].to_numpy(dtype=float)), prof["ci_low"].to_numpy(dtype=float), mu)
    hi = np.where(np.isfinite(prof["ci_high"].to_numpy(dtype=float)), prof["ci_high"].to_numpy(dtype=float), mu)
    vals = np.concatenate([lo, hi, [0.0]])
    vals = vals[np.isfinite(vals)]
    v0, v1 = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
    if v1 <= v0:
        v1 = v0 + 1.0
    plot_h = height - pad_b - pad_t
    step = (width - pad_l - 10) / k

    def ymap(v):
        return pad_t + (v1 - v) / (v1 - v0) * plot_h

    parts = [f'<svg class="plot param" data-param="{esc(name)}" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{esc(name)}">',
             f'<rect width="{width}" height="{height}" fill="#fff"/>',
             f'<line x1="{pad_l}" x2="{width - 10}" y1="{ymap(0):.1f}" y2="{ymap(0):.1f}" stroke="#999" stroke-dasharray="3 3"/>',
             f'<text x="4" y="{pad_t + 10}" font-size="10">{_num(v1, ".2g")}</text>',
             f'<text x="4" y="{height - pad_b}" font-size="10">{_num(v0, ".2g")}</text>']
    for i, row in enumerate(prof.itertuples(index=False)):
        cx = pad_l + (i + 0.5) * step
        if not math.isfinite(mu[i]):
            continue
        colour = "#2ca02c" if mu[i] >= 0 else "#d62728"
        parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{ymap(lo[i]):.1f}" y2="{ymap(hi[i]):.1f}" stroke="#333"/>')
        tip = (f"{name} = {row.bin}: n={row.count}, mean witness {_num(mu[i])} "
               f"[{_num(lo[i])}, {_num(hi[i])}], realistic {_num(row.realistic_rate, '.0%')}")
        parts.append(f'<circle cx="{cx:.1f}" cy="{ymap(mu[i]):.1f}" r="4" fill="{colour}"><title>{esc(tip)}</title></circle>')
        label = str(row.bin)
        label = label if len(label) <= 12 else label[:11] + "…"
        parts.append(f'<text x="{cx:.1f}" y="{height - pad_b + 14}" font-size="9" text-anchor="middle">{esc(label)}</text>')
        parts.append(f'<text x="{cx:.1f}" y="{height - pad_b + 26}" font-size="9" text-anchor="middle" fill="#777">n={row.count}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _importance_svg(table, width: int = 640) -> str:
    k = len(table)
    height = 20 + 22 * k
    left = 170
    vmax = max(1e-12, float(np.nanmax(np.clip(table["importance"].to_numpy(dtype=float), 0, None))) if k else 1.0)
    parts = [f'<svg id="importance" class="plot" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="parameter importance">',
             f'<rect width="{width}" height="{height}" fill="#fff"/>']
    for i, row in enumerate(table.itertuples(index=False)):
        y = 10 + 22 * i
        w = max(0.0, float(row.importance)) / vmax * (width - left - 80)
        label = str(row.parameter) if len(str(row.parameter)) <= 24 else str(row.parameter)[:23] + "…"
        parts.append(f'<text x="{left - 6}" y="{y + 13}" font-size="12" text-anchor="end">{esc(label)}'
                     f'<title>{esc(row.parameter)}</title></text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="16" fill="{"#4e79a7" if row.significant else "#bab0ac"}">'
                     f'<title>{esc(row.parameter)}: {_num(row.importance)} ± {_num(row.importance_std)}</title></rect>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 13}" font-size="11">{_num(row.importance, ".3f")}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ----------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------


def _table(df, columns=None, extra=None, table_id: str = "") -> str:
    if df is None or len(df) == 0:
        return "<p>None.</p>"
    columns = list(columns or df.columns)
    head = "".join(f"<th>{esc(c)}</th>" for c in columns) + ("".join(f"<th>{esc(h)}</th>" for h in extra[0]) if extra else "")
    body = []
    for i, (_, row) in enumerate(df.iterrows()):
        cells = []
        for c in columns:
            v = row[c]
            cells.append(f"<td>{_num(v) if isinstance(v, (float, np.floating)) else esc(v)}</td>")
        if extra:
            cells.extend(f"<td>{cell}</td>" for cell in extra[1](i, row))
        body.append("<tr>" + "".join(cells) + "</tr>")
    tid = f' id="{esc(table_id)}"' if table_id else ""
    return f'<table class="sortable"{tid}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:120px}
.card b{display:block;font-size:1.3em}.card span{color:#666;font-size:.85em}
table{border-collapse:collapse;font-size:.85em;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
th{background:#f4f4f4;cursor:pointer}.thumb{width:64px;height:auto;image-rendering:pixelated}
.params{display:flex;flex-wrap:wrap;gap:16px}.param-box{max-width:430px}.dir{font-style:italic;color:#444}
.clabel{font-size:13px;font-weight:bold}.note{color:#8a6d3b}svg.plot{max-width:100%;height:auto}
"""

# Runs first: any script error ends up in the DOM (#simgap-errors) for headless checks.
_JS_HOOK = """
window.__simgapErrors=[];
window.addEventListener('error',function(e){window.__simgapErrors.push(String(e.message));
var el=document.getElementById('simgap-errors');if(el){el.textContent=window.__simgapErrors.join('\\n');}});
"""

_JS_MAIN = """
(function(){
  function toggle(cls,on){var pts=document.querySelectorAll('#map circle.'+cls);
    for(var i=0;i<pts.length;i++){pts[i].style.display=on?'':'none';}}
  var boxes=document.querySelectorAll('input[data-toggle]');
  for(var i=0;i<boxes.length;i++){(function(b){b.addEventListener('change',function(){toggle(b.getAttribute('data-toggle'),b.checked);});})(boxes[i]);}
  var tables=document.querySelectorAll('table.sortable');
  for(var t=0;t<tables.length;t++){(function(table){
    var ths=table.querySelectorAll('th');
    for(var j=0;j<ths.length;j++){(function(col,th){th.addEventListener('click',function(){
      var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
      var asc=th.getAttribute('data-asc')!=='1';th.setAttribute('data-asc',asc?'1':'0');
      rows.sort(function(a,b){var x=a.cells[col].textContent,y=b.cells[col].textContent;
        var fx=parseFloat(x),fy=parseFloat(y);var c=(!isNaN(fx)&&!isNaN(fy))?fx-fy:x.localeCompare(y);return asc?c:-c;});
      for(var r=0;r<rows.length;r++){body.appendChild(rows[r]);}
    });})(j,ths[j]);}
  })(tables[t]);}
  document.body.setAttribute('data-simgap-ready','1');
})();
"""


def render(report, *, images: Any = None, title: str = "simgap domain-gap report", max_rows: int = 20) -> str:
    real_images, syn_images = _split_images(images)
    pr = report.prdc
    lo, hi = report.mmd2_ci
    cards = [
        ("MMD²", _num(report.mmd2), f"CI [{_num(lo)}, {_num(hi)}]"),
        ("p-value", _num(report.p_value, ".3g"), f"{report.settings.get('n_permutations', '')} permutations"),
        ("C2ST AUC", _num(report.c2st_auc, ".3f"), "0.5 = indistinguishable"),
        ("sliced W2", _num(report.swd), ""),
        ("Fréchet", _num(report.fd), ""),
    ] + [(k, _num(pr[k], ".3f"), f"k={report.settings.get('k', '')}") for k in ("precision", "recall", "density", "coverage")]
    out = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        'style-src \'unsafe-inline\'; script-src \'unsafe-inline\'">',
        f"<title>{esc(title)}</title><style>{_CSS}</style><script>{_JS_HOOK}</script></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>{report.n_synthetic} synthetic vs {report.n_real} real samples, {report.dim}-d embeddings; "
        f"gaussian kernel, bandwidth {_num(report.settings.get('bandwidth'))}.</p>",
        '<div class="cards">' + "".join(f'<div class="card"><span>{esc(a)}</span><b>{b}</b><span>{esc(c)}</span></div>'
                                       for a, b, c in cards) + "</div>",
    ]
    for a in report.approximations:
        out.append(f'<p class="note">Approximation: {esc(a)}</p>')
    for n in report.notes:
        out.append(f'<p class="note">Note: {esc(n)}</p>')
    out.append(f"<h2>Latent space ({esc(report.settings.get('map_method', 'pca')).upper()})</h2>")
    out.append('<label><input type="checkbox" data-toggle="real" checked> real</label> '
               '<label><input type="checkbox" data-toggle="syn" checked> synthetic</label>')
    out.append(_map_svg(report))
    out.append("<h2>Clusters</h2>")
    out.append(_cluster_bars(report))
    out.append(_table(report.clusters, table_id="clusters-table"))

    if report.parameter_importance is not None:
        out.append("<h2>Simulation parameters</h2>")
        if report.parameter_r2 is not None:
            out.append(f"<p>Held-out R² of the parameters predicting each sample's witness: {_num(report.parameter_r2, '.3f')}</p>")
        out.append(_importance_svg(report.parameter_importance))
        dirs = [d for d in report.parameter_importance["direction"] if d]
        if dirs:
            out.append("<ul>" + "".join(f'<li class="dir">{esc(d)}</li>' for d in dirs) + "</ul>")
        out.append('<div class="params">')
        for name in report.parameter_importance["parameter"]:
            prof = report.parameter_profiles[name]
            out.append(f'<div class="param-box"><h3>{esc(name)}</h3>{_param_svg(name, prof)}</div>')
        out.append("</div>")

    params = report.params

    def syn_extra(i, row):
        idx = int(row["row"]) if "row" in row else int(row.name)  # the input row
        cells = []
        if params is not None:
            cells.append(esc(", ".join(f"{k}={v}" for k, v in params.loc[idx].items())))
        if syn_images is not None:
            cells.append(_thumb(syn_images, idx, "synthetic"))
        return cells

    heads = (["parameters"] if params is not None else []) + (["image"] if syn_images is not None else [])
    out.append("<h2>Least realistic synthetic samples</h2>")
    out.append(_table(report.least_realistic(max_rows), ["id", "witness", "realism", "p_real", "cluster"],
                      (heads, syn_extra) if heads else None, "least-realistic"))

    def real_extra(i, row):
        return [_thumb(real_images, int(row["row"]), "real")]

    out.append("<h2>Coverage holes (real samples no synthetic sample covers)</h2>")
    holes = report.coverage_holes(max_rows)
    out.append(f"<p>{int((~report.real_coverage['covered']).sum())} of {len(report.real_coverage)} real samples are not covered.</p>")
    out.append(_table(holes, ["id", "nn_distance", "radius", "nearest_synthetic", "cluster"],
                      (["image"], real_extra) if real_images is not None else None, "coverage-holes"))
    if report.per_class is not None:
        out.append("<h2>Per class</h2>")
        out.append(_table(report.per_class, table_id="per-class"))
    out.append("<h2>Directions of largest difference</h2>")
    out.append(_table(report.directions, table_id="directions"))
    out.append('<pre id="simgap-errors" hidden></pre>')
    out.append(f"<script>{_JS_MAIN}</script></body></html>")
    return "\n".join(out)
