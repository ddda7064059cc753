"""Debian's headless Chromium, for the tests that look at report.html as a reader does.

``./run tests`` installs the ``chromium`` package; CI (``CI=true``) must have it, so a test
that needs it fails there when it is missing and skips, saying why, anywhere else
(``need_chromium``). Chromium runs with no network, a throwaway profile and a time limit.

``first_screen`` says where elements are laid out on a page WIDTH pixels wide: a copy of the
page gets a small script that writes each element's position into the document, which
``--dump-dom`` returns. Only the copy gets it (report.html itself allows no script: its
Content-Security-Policy); the layout is the same. ``--screenshot`` pictures the first
WIDTH×HEIGHT pixels of the page, while ``--dump-dom`` lays it out in the window less its frame
(1280×657 for a 1280×800 window, Chromium 156): the page's layout depends on its width only (no
viewport-height units: ``first_screen`` checks), so a box is on the first screen when it lies
within the screenshot's WIDTH×HEIGHT (``on_first_screen``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_TIMEOUT_S = 90
WIDTH, HEIGHT = 1280, 800  # the first screen of a laptop


def need_chromium() -> str:
    """Chromium's path; outside CI, a skip that says how to get it; in CI, a failure."""
    if CHROMIUM is not None:
        return CHROMIUM
    why = "chromium is not installed (./run tests installs Debian's chromium package)"
    if os.environ.get("CI"):
        pytest.fail(f"{why}; CI must run the browser tests", pytrace=False)
    pytest.skip(why)


def chromium(tmp_path: Path, *args: str, size: tuple[int, int] = (WIDTH, HEIGHT)
             ) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with no network and a throwaway profile, bounded in time; the
    whole process group is killed on timeout (Chromium forks helpers)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_CACHE_HOME": str(home / ".cache")}
    cmd = [need_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
           "--host-resolver-rules=MAP * ~NOTFOUND",
           f"--user-data-dir={tmp_path / 'chromium-profile'}",
           f"--window-size={size[0]},{size[1]}", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=BROWSER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {BROWSER_TIMEOUT_S}s: {' '.join(args)}")
    assert proc.returncode == 0, err[-2000:]
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


# Each element matched by a selector: its box in the window, and its text (white space
# collapsed). Run at the end of <body>, when the page is laid out.
_MEASURE = """<script>
(function () {
  var out = {window: [window.innerWidth, window.innerHeight], found: {}};
  SELECTORS.forEach(function (sel) {
    out.found[sel] = Array.prototype.map.call(document.querySelectorAll(sel), function (el) {
      var r = el.getBoundingClientRect();
      return {top: r.top, bottom: r.bottom, left: r.left, right: r.right,
              text: el.textContent.replace(/\\s+/g, " ").trim()};
    });
  });
  var pre = document.createElement("pre");
  pre.id = "keyparity-layout";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def first_screen(tmp_path: Path, report: Path, selectors: list[str]) -> dict[str, Any]:
    """Where each element of ``report`` matched by ``selectors`` is laid out in a WIDTH×HEIGHT
    window: ``{"window": [w, h], "found": {selector: [{top, bottom, left, right, text}]}}``."""
    html = report.read_text(encoding="utf-8")
    assert not re.search(r"\d(vh|vmin|vmax)\b", html), "a height that depends on the window"
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    script = _MEASURE.replace("SELECTORS", json.dumps(selectors))
    copy = tmp_path / f"measured-{report.name}"
    copy.write_text(html.replace("</body>", script + "\n</body>"), encoding="utf-8")
    dom = chromium(tmp_path, "--dump-dom", copy.resolve().as_uri()).stdout
    found = re.search(r'<pre id="keyparity-layout">(.*?)</pre>', dom, re.S)
    assert found, "the layout script did not run"
    text = found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace(
        "&gt;", ">").replace("&amp;", "&")
    return json.loads(text)


def on_first_screen(box: dict[str, Any], layout: dict[str, Any]) -> bool:
    """The whole box is inside the first WIDTH×HEIGHT pixels of the page, as the screenshot
    and a reader opening the page see it (no scrolling)."""
    assert layout["window"][0] == WIDTH, layout["window"]
    return 0 <= box["top"] and box["bottom"] <= HEIGHT and 0 <= box["left"] \
        and box["right"] <= WIDTH
