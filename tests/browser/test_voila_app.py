"""Real-browser check of ``make app``: the ablation panel as a standalone Voilà page, in Debian's Chromium.

Starts ``voila app/ablation_panel.ipynb`` from the repo's venv (``HLGFA_PROFILE=ci``: 64 px, 8 training
images, 2 epochs, so a Run takes seconds), opens the page in headless Chromium via Playwright, checks
that no code is shown, unticks ``gated_residual``, presses **Run** and reads the new metrics from
``.hlgfa-ablation-result``. A missing ``chromium`` is a skip locally and a failure in CI (``CI`` set);
a missing ``voila`` likewise. Playwright never downloads a browser here: it drives ``/usr/bin/chromium``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _browser_support import (
    AUROC_RE,
    BLOCKS,
    CHROMIUM_ARGS,
    OUT_DIR,
    REPO,
    find_chromium,
    free_port,
    missing,
    venv_python,
)

pytestmark = pytest.mark.browser

APP = REPO / "app" / "ablation_panel.ipynb"
SCREENSHOT = OUT_DIR / "voila_app.png"
FAILURE_SCREENSHOT = OUT_DIR / "voila_app_failure.png"
SERVER_START_S = 90  # the port accepts connections
PAGE_S = 300  # the notebook executed and the panel rendered (data, backbone, splits)
RUN_S = 240  # Run clicked -> result shown


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pids_using(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (the kernels this server started)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
    return [p for p in pids if p != os.getpid()]


@contextlib.contextmanager
def _voila(tmp: Path) -> Iterator[tuple[str, Path]]:
    py = venv_python()
    if subprocess.run([py, "-c", "import voila"], capture_output=True).returncode != 0:
        missing("voila is not installed in the venv (pip install hlgfa-lite[app])")
    runtime = tmp / "jupyter-runtime"
    env = {
        **os.environ,
        "HLGFA_PROFILE": "ci",
        "HLGFA_WORKDIR": str(tmp / "work"),
        "HF_HUB_OFFLINE": "1",
        "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "IPYTHONDIR": str(tmp / "ipython"),
        "PATH": f"{Path(py).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "HLGFA_THREADS": os.environ.get("HLGFA_THREADS", "1"),
    }
    port = free_port()
    log = tmp / "voila.log"
    cmd = [py, "-m", "voila", str(APP), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
           "--show_tracebacks=True"]  # fmt: skip
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not _listening(port):
            if proc.poll() is not None:
                pytest.fail(f"voila exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"voila did not listen in {SERVER_START_S} s:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/", log
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
        for pid in _pids_using(str(runtime)):  # kernels left behind (own session): ours, by id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_ablation_panel_page(tmp_path: Path) -> None:
    assert APP.is_file(), f"{APP} missing"
    chromium = find_chromium()  # missing: skip locally, failure in CI
    from playwright.sync_api import expect, sync_playwright

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for old in (SCREENSHOT, FAILURE_SCREENSHOT):
        old.unlink(missing_ok=True)
    t0 = time.monotonic()
    with _voila(tmp_path) as (url, log), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS, timeout=60_000)
        console: list[str] = []
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        try:
            page.goto(url, wait_until="domcontentloaded", timeout=PAGE_S * 1000)
            panel = page.locator(".hlgfa-ablation-panel")
            expect(panel).to_be_visible(timeout=PAGE_S * 1000)
            body = page.locator("body").inner_text()
            assert "Traceback" not in body and "Error" not in body.split("HLGFA ablation panel")[0], body[:2000]
            code = page.locator(".jp-CodeCell .jp-InputArea, .jp-CodeMirrorEditor, .cm-editor")
            assert code.count() == 0, "a code cell's input is on the page"
            assert "import" not in body and "AblationPanel(" not in body, "the page shows source code"

            boxes = {}
            for block in BLOCKS:
                box = panel.locator(".widget-checkbox").filter(has=page.get_by_text(block, exact=True))
                expect(box, f"one checkbox described {block!r}").to_have_count(1)
                boxes[block] = box.locator("input[type=checkbox]")
            result = panel.locator(".hlgfa-ablation-result")
            expect(result).to_have_count(1)
            run = panel.get_by_role("button", name="Run", exact=True)
            gated = boxes["gated_residual"]
            expect(gated).to_be_checked()
            gated.uncheck()
            expect(gated).not_to_be_checked()
            before = result.inner_text()
            run.click()
            deadline = time.monotonic() + RUN_S
            text = before
            while time.monotonic() < deadline:
                text = result.inner_text()
                if "gated_residual=off" in text and AUROC_RE.search(text):
                    break
                assert "error:" not in text, text
                time.sleep(0.5)
            else:
                raise AssertionError(f"no 'gated_residual=off' + 'image AUROC' {RUN_S} s after Run: {text!r}")
            auroc = float(AUROC_RE.search(text).group(1))
            assert 0.0 <= auroc <= 1.0
            expect(panel.locator("table tbody tr")).to_have_count(1)  # the comparison table has the run
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            print(f"image AUROC {auroc:.3f} in {time.monotonic() - t0:.1f} s; screenshot: {SCREENSHOT}")
        except BaseException:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(FAILURE_SCREENSHOT), full_page=True)
            print("--- page errors:\n" + "\n".join(console[-20:]))
            print("--- voila log tail:\n" + log.read_text(errors="replace")[-4000:])
            raise
        finally:
            browser.close()
