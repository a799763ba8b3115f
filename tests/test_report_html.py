"""GapReport.to_html: one self-contained offline page, user text escaped, and a
real headless browser (Debian's chromium) loads it without console errors and
renders the plots."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import zlib

import numpy as np
import pandas as pd
import pytest

import simgap

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
EVIL = '<script>alert("x")</script>&'


@pytest.fixture(scope="module")
def report_and_images():
    g = np.random.default_rng(2)
    d = 6
    centres = 6.0 * np.eye(d)[:3]
    rm = g.choice([0, 1], 150)
    sm = g.choice([0, 2], 150)
    real = centres[rm] + g.standard_normal((150, d))
    syn = centres[sm] + g.standard_normal((150, d))
    params = pd.DataFrame({"blur": g.uniform(0, 2, 150), EVIL: g.choice(["a", "<b>bold</b>"], 150)})
    ids = ([f"real-{i}" for i in range(150)], [f"syn-{i}{EVIL}" if i == 0 else f"syn-{i}" for i in range(150)])
    report = simgap.compare(real, syn, params=params, ids=ids, labels=(rm, sm), n_permutations=200,
                            n_bootstrap=50, c2st_folds=3)
    images = {"real": g.integers(0, 255, (150, 12, 12, 3), dtype=np.uint8), "synthetic": g.random((150, 10, 10))}
    return report, images


def test_page_is_self_contained_and_escaped(tmp_path, report_and_images):
    report, images = report_and_images
    path = report.to_html(tmp_path / "gap.html", images=images, title=f"gap {EVIL}")
    assert sorted(os.listdir(tmp_path)) == ["gap.html"]
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    # no network: nothing is fetched (the only URL is the SVG namespace name)
    assert re.findall(r"""(?:src|href)\s*=\s*["']?(?!data:)[a-z]+:""", text, flags=re.I) == []
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg"}
    assert "<link" not in text and "@import" not in text
    # user text escaped everywhere
    assert EVIL not in text and "<b>bold</b>" not in text
    assert html_escaped(EVIL) in text
    # the parts are there
    for part in ('id="map"', 'id="cluster-bars"', 'id="importance"', 'class="plot param"', 'id="least-realistic"',
                 'id="coverage-holes"', 'id="per-class"', "<polygon"):
        assert part in text, part
    assert text.count('<circle class="pt real"') > 0 and text.count('<circle class="pt syn"') > 0
    # thumbnails are inline PNGs that decode
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(uris) >= 2
    png = base64.b64decode(uris[0])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    start = png.index(b"IDAT") + 4
    length = int.from_bytes(png[start - 8 : start - 4], "big")
    zlib.decompress(png[start : start + length])


def html_escaped(s: str) -> str:
    import html

    return html.escape(s, quote=True)


def test_bad_images_and_path_name_the_argument(tmp_path, report_and_images):
    report, _ = report_and_images
    with pytest.raises(ValueError, match="images"):
        report.to_html(tmp_path / "a.html", images={"fake": []})
    with pytest.raises(ValueError, match="images"):
        report.to_html(tmp_path / "a.html", images=[np.zeros((5, 5, 2))] * 150)
    with pytest.raises(TypeError, match="path"):
        report.to_html(None)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
def test_page_loads_in_headless_chromium_without_errors(tmp_path, report_and_images):
    report, images = report_and_images
    page = report.to_html(tmp_path / "gap.html", images=images)
    url = "file://" + os.path.abspath(page)
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
            "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
            f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the page's scripts ran to the end and the error hook saw nothing
    assert 'data-simgap-ready="1"' in dom.stdout
    hook = re.search(r'<pre id="simgap-errors"[^>]*>(.*?)</pre>', dom.stdout, flags=re.S)
    assert hook is not None and hook.group(1).strip() == "", hook and hook.group(1)
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln
               or "Refused to" in ln or "Content Security Policy" in ln]
    assert console == [], console

    shot = tmp_path / "shot.png"
    res = subprocess.run(base + [f"--screenshot={shot}", "--window-size=1200,1400", url],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is optional: the weaker check is the file size
        assert shot.stat().st_size > 20_000
        return
    px = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)

    def near(rgb):
        return int((np.abs(px - np.array(rgb)).sum(axis=1) < 60).sum())

    # map points of both sets (real #1f77b4, synthetic #ff7f0e, drawn semi-transparent over white)
    assert near((0x8f, 0xbb, 0xd9)) + near((0x1f, 0x77, 0xb4)) > 200
    assert near((0xff, 0xbb, 0x87)) + near((0xff, 0x7f, 0x0e)) > 200


# ---- found by a robustness review (2026-12-01) ---------------------------------------------------

def test_summary_prints_user_strings_as_text_not_markup():
    """A parameter named "light[/b]" raised rich's MarkupError; "[bold]temp" lost its bracket."""
    import pandas as pd

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 4)), rng.normal(size=(110, 4)) + 0.3
    params = pd.DataFrame({"light[/b]": rng.random(110), "[bold]temp": rng.random(110)})
    rep = simgap.compare(x, y, params=params, n_permutations=20, n_bootstrap=10, map_method="pca",
                         n_clusters=2)
    text = rep.summary_text(width=200)
    assert "light[/b]" in text and "[bold]temp" in text


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_report_files_get_the_usual_mode(tmp_path, umask):
    """mkstemp's 0600 was kept: shared reports came out unreadable to others."""
    rng = np.random.default_rng(1)
    rep = simgap.compare(rng.normal(size=(60, 3)), rng.normal(size=(50, 3)), n_permutations=10, n_bootstrap=5,
                         map_method="pca", n_clusters=2)
    old = os.umask(umask)
    try:
        rep.to_json(tmp_path / "r.json")
        rep.to_html(tmp_path / "r.html")
        for path in (tmp_path / "r.json", tmp_path / "r.html"):
            assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
        os.chmod(tmp_path / "r.json", 0o640)
        rep.to_json(tmp_path / "r.json")  # a replaced file keeps its mode
        assert os.stat(tmp_path / "r.json").st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
