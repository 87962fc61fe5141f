"""What the real-browser tests share: paths, Chromium's flags, the result pattern, skip-or-fail, ports.

Imported by ``test_lab_panel.py`` (JupyterLab) and ``test_voila_app.py`` (Voilà); each keeps its own
server, timeouts and page checks. Playwright never downloads a browser here: the tests drive Debian's
``/usr/bin/chromium``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OUT_DIR = REPO / "test-output" / "browser"
BLOCKS = ("dual_resolution", "priors", "modulation", "gated_residual", "noise_augment")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
]
AUROC_RE = re.compile(r"image AUROC\D*([01]\.\d+)")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str) -> None:
    """Skip locally, fail in CI."""
    if in_ci():
        pytest.fail(f"{what} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(what)


def find_chromium() -> str:
    """Debian's Chromium, with Playwright's Python package to drive it; missing: skip locally, fail in CI."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        missing("Debian's chromium is not installed (make browser-deps, or apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("playwright (python) is not installed in this environment")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def venv_python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable
