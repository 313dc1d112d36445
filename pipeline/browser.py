"""Headless Chromium for the gallery's test and benchmark (Debian package `chromium`; `make setup`
installs it): the rendered DOM (--dump-dom) and a screenshot of a local page, no network, no profile.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# headless as root in a closed network: no sandbox (root), no GPU, nothing that phones home
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio")


def chromium_path() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def page_url(page: str | Path, fragment: str = "") -> str:
    return Path(page).resolve().as_uri() + (f"#{fragment}" if fragment else "")


def _run(args: list[str], timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium; make setup does it)")
    with tempfile.TemporaryDirectory(prefix="hf-chromium-") as profile:
        t0 = time.perf_counter()
        proc = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout)
        return proc, time.perf_counter() - t0


def dump_dom(url: str, timeout: float = 60.0, virtual_time_ms: int | None = None) -> tuple[str, float]:
    """The DOM after the page loaded (its scripts ran), and the seconds the browser took in all."""
    extra = [f"--virtual-time-budget={virtual_time_ms}"] if virtual_time_ms else []
    proc, secs = _run([*extra, "--dump-dom", url], timeout)
    if proc.returncode != 0 or "<html" not in proc.stdout:
        raise RuntimeError(f"chromium --dump-dom {url} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout, secs


def screenshot(url: str, png: str | Path, size: tuple[int, int] = (1280, 900), timeout: float = 60.0) -> Path:
    """A PNG screenshot of the page (images loaded: 3 s of virtual time)."""
    png = Path(png)
    proc, _ = _run([f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=3000",
                    f"--screenshot={png.resolve()}", url], timeout)
    if proc.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium --screenshot {url} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return png
