"""Notebook 05 in a real JupyterLab and a real browser: run it, move a slider, press Run, see the plot change.

Run with ``make browser-test`` (it first runs ``tests/browser/install_chromium.sh``, which installs Debian's
``chromium`` package with apt-get when ``/usr/bin/chromium`` is missing). Playwright drives that system browser
through ``executable_path``; it never downloads a browser of its own. The server runs on a free loopback port
with a random token, temporary Jupyter config/runtime/settings folders and ``ORCHLIB_QUICK=1``; its cached runs
go to a temporary folder. Screenshots are written to ``tests/browser/artifacts/`` (not committed).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
NOTEBOOK = "05_sensitivity_widgets.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: generous upper bounds for waiting on the server and the kernel (they only stop a hung test).
SERVER_START_S = 90
NOTEBOOK_RUN_S = 180


@dataclass(frozen=True)
class Lab:
    url: str
    token: str
    log: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_server(url: str, token: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"jupyter lab exited with code {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"jupyter lab did not answer within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server we started (it shuts its kernels down); SIGKILL to its own group if it hangs."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the group of the server started below, nothing else
        process.wait(timeout=10)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing; install it with: bash tests/browser/install_chromium.sh")
    jupyter = Path(sys.executable).with_name("jupyter")
    settings = tmp_path / "lab-settings"
    for plugin, values in (
        # No news/update notifications: they would sit over the notebook in a fresh profile.
        ("apputils-extension/notification", {"fetchNews": "false", "checkForUpdates": False}),
        # Never write the executed notebook (with outputs) over the committed one.
        ("docmanager-extension/plugin", {"autosave": False}),
    ):
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "ORCHLIB_QUICK": "1",
        "ORCHLIB_RESULTS": str(tmp_path / "results"),
        "PATH": f"{jupyter.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    token = secrets.token_hex(16)
    port = _free_port()
    log = tmp_path / "jupyter-lab.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(jupyter),
                "lab",
                "--no-browser",
                # jupyter_server 2 spelling of --ServerApp.token (which it still accepts, with a deprecation warning)
                f"--IdentityProvider.token={token}",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.root_dir={ROOT / 'notebooks'}",
                # containers and CI often run as root, which the server refuses without this flag
                *(["--allow-root"] if os.geteuid() == 0 else []),
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_server(url, token, process, log)
        yield Lab(url=url, token=token, log=log)
    finally:
        _stop(process)


def _image_digest(image: Locator) -> tuple[str, str]:
    src = image.get_attribute("src") or ""
    return src, hashlib.sha256(src.encode()).hexdigest()[:16]


def _show_panel(page: Page) -> None:
    """Scroll the notebook so that the panel's first control is at the top of the view."""
    page.locator(".orchlib-network").evaluate("element => element.scrollIntoView({block: 'start'})")


def _run_all_cells(page: Page) -> None:
    """Menu "Run > Run All Cells", clicked as a user would."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    label = page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))
    page.locator(".lm-Menu-item", has=label).click()


def test_slider_and_run_button_redraw_the_plot_in_jupyterlab(lab: Lab, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    committed = (ROOT / "notebooks" / NOTEBOOK).read_bytes()
    try:
        _drive_notebook(lab, tmp_path)
    finally:
        # JupyterLab may save the notebook (autosave is off, but a save shortcut or a future default could
        # do it); the committed file must come out as it went in.
        saved = (ROOT / "notebooks" / NOTEBOOK).read_bytes()
        if saved != committed:
            (ROOT / "notebooks" / NOTEBOOK).write_bytes(committed)
            pytest.fail(
                f"JupyterLab wrote notebooks/{NOTEBOOK} during the test; restored the committed version"
            )


def _drive_notebook(lab: Lab, tmp_path: Path) -> None:
    """Open notebook 05, run it, move the users slider, press Run; assert the plot changed."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=SERVER_START_S * 1000)
            # The status bar names the kernel and says Idle only once the kernel is connected.
            expect(page.locator(".jp-StatusBar-Widget")).to_contain_text(
                "Python 3 (ipykernel) | Idle", timeout=SERVER_START_S * 1000
            )

            _run_all_cells(page)
            status = page.locator(".orchlib-status")
            image = page.locator(".orchlib-sensitivity-output img")
            expect(status).to_contain_text("fresh", timeout=NOTEBOOK_RUN_S * 1000)
            expect(image).to_be_visible()
            users_readout = page.locator(".orchlib-n-users .widget-readout")
            users_before = int(users_readout.inner_text())
            src_before, digest_before = _image_digest(image)
            idle = page.locator(".jp-StatusBar-Widget", has_text="| Idle")
            expect(idle).to_be_visible(timeout=NOTEBOOK_RUN_S * 1000)  # the notebook's last cell finished too
            _show_panel(page)
            page.screenshot(path=str(ARTIFACTS / "lab_widgets_before.png"))

            # Move the users slider with the keyboard on its handle, as a user would.
            handle = page.locator(".orchlib-n-users .noUi-handle")
            handle.focus()
            for _ in range(4):
                handle.press("ArrowRight")
            expect(users_readout).to_have_text(str(users_before + 4))
            expect(status).to_contain_text("stale")
            assert image.get_attribute("src") == src_before, "the plot changed before Run was pressed"

            page.locator(".orchlib-run").click()
            expect(image).not_to_have_attribute("src", src_before, timeout=NOTEBOOK_RUN_S * 1000)
            expect(status).to_contain_text("fresh")
            expect(status).to_contain_text(f"{users_before + 4} users")
            src_after, digest_after = _image_digest(image)
            assert src_after.startswith("data:image/png")
            assert digest_after != digest_before
            _show_panel(page)
            page.screenshot(path=str(ARTIFACTS / "lab_widgets_after.png"))
        finally:
            context.close()
