"""Headless Chromium from the OS packages, driven from the command line (no DevTools client, no download): load a
page from disk, then either print the DOM after load (``--dump-dom``) or take a screenshot. The browser's console
goes to stderr (``--enable-logging=stderr``), one ``CONSOLE`` line per message: errors, uncaught exceptions, and
Content-Security-Policy violations (a page that tries to fetch anything)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
         "--hide-scrollbars", "--mute-audio", "--enable-logging=stderr", "--v=0")
_CONSOLE = re.compile(r":CONSOLE[^\]]*\] \"(.*)\", source: (.*)$", re.M)


def find_chromium() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


@dataclass
class Load:
    dom: str                              # the DOM after load (--dump-dom), else ""
    console: list[tuple[str, str]]        # (message, source) of every console message
    stderr: str


def load(chromium: str, page: Path, profile: Path, *, screenshot: Path | None = None,
         window: tuple[int, int] = (1280, 2000), timeout: float = 120) -> Load:
    """Load `page` (a file) in a fresh profile; with `screenshot`, write a PNG of the window, else dump the DOM."""
    action = [f"--screenshot={screenshot}", f"--window-size={window[0]},{window[1]}"] if screenshot else [
        "--dump-dom"]
    p = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *action, page.resolve().as_uri()],
                       capture_output=True, timeout=timeout, check=False)
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode != 0:
        raise RuntimeError(f"chromium exited with {p.returncode}: {err[-2000:]}")
    return Load(p.stdout.decode("utf-8", "replace"), _CONSOLE.findall(err), err)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", "not a PNG"
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)
