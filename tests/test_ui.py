"""The Dagster webserver serves the full lineage: GraphQL asset graph + a headless-Chromium screenshot."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_defs import EXPECTED_GRAPH

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(base: str, query: str) -> dict:
    req = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


class UI:
    """`scaling-pipeline ui` (dg dev: webserver, daemon, code server) on a free port, in its own group."""

    def __init__(self, home: Path):
        (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.dev.yaml").read_text())
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DAGSTER_HOME": str(home), "SCALING_DB": str(home / "w.duckdb"),
               "SCALING_LOGS": str(home / "logs")}
        env.pop("VIRTUAL_ENV", None)
        exe = Path(sys.executable).with_name("scaling-pipeline")
        self.proc = subprocess.Popen([str(exe), "ui", "--port", str(self.port)], env=env, cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.output: list[str] = []
        threading.Thread(target=lambda: self.output.extend(self.proc.stdout), daemon=True).start()
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{self.base}/server_info", timeout=2).read()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    pytest.fail("the UI did not start:\n" + "".join(self.output[-40:]))
                time.sleep(0.5)

    def group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, sig: int) -> None:
        """Send ``sig`` to the `ui` process alone (as a supervisor does) and wait for it; it kills what is
        left of its group before it exits, so the group is gone (its zombies reaped) at once."""
        self.proc.send_signal(sig)
        self.proc.wait(timeout=60)
        deadline = time.monotonic() + 10  # reaping by init, not a speed bound
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)

    def kill(self) -> None:
        if self.group_alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    ui = UI(tmp_path_factory.mktemp("dagster_home"))
    try:
        yield ui
    finally:
        ui.kill()


@pytest.fixture(scope="module")
def webserver(ui) -> str:
    return ui.base


def test_graphql_serves_the_full_lineage(webserver):
    data = _graphql(webserver, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")["data"]
    graph = {"/".join(n["assetKey"]["path"]): sorted("/".join(d["path"]) for d in n["dependencyKeys"])
             for n in data["assetNodes"]}
    assert graph == EXPECTED_GRAPH


def test_lineage_page_screenshot(webserver, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium is not installed (apt-get install chromium) — screenshot of the lineage page skipped")
    _graphql(webserver, "mutation { setNuxSeen }")  # no first-visit community dialog over the graph
    shot = tmp_path / "lineage.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900",
                    "--virtual-time-budget=15000", f"--screenshot={shot}", f"{webserver}/asset-groups"],
                   check=True, timeout=120, capture_output=True)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a rendered page, not a blank one


def test_ui_starts_without_warnings_and_stops_on_sigterm(ui):
    """Runs last in this module (it stops the shared UI): no venv-mismatch or ignored-dagster.yaml
    warning at start, and SIGTERM to `scaling-pipeline ui` ends webserver, daemon and code server."""
    started = "".join(ui.output)
    assert "Serving dagster-webserver" in started, started[-3000:]
    assert "does not match the virtual environment" not in started
    assert "will not be used" not in started
    ui.stop(signal.SIGTERM)
    assert not ui.group_alive(), "processes of the UI outlived SIGTERM:\n" + "".join(ui.output[-20:])
    assert ui.proc.returncode == 0 and "stopping the UI (SIGTERM)" in "".join(ui.output)


def test_ui_stops_on_ctrl_c(tmp_path):
    ui = UI(tmp_path)
    try:
        ui.stop(signal.SIGINT)
        assert not ui.group_alive()
        assert ui.proc.returncode == 0 and "stopping the UI (SIGINT)" in "".join(ui.output)
    finally:
        ui.kill()
