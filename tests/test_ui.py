"""The Dagster webserver serves the full lineage (GraphQL asset graph), and the report and the lineage page
lay out in a real browser (headless Chromium at 1400 px, screenshots kept)."""

from __future__ import annotations

import contextlib
import datetime as dt
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

import duckdb
import pytest

from scaling_pipeline.lib.cleaning import clean
from scaling_pipeline.lib.ingest import ingest
from scaling_pipeline.lib.reporting import load_inputs, render_report
from scaling_pipeline.lib.simulate import write_demo
from scaling_pipeline.lib.warehouse import FitSettings, fit_families, plan_families
from tests.cdp import LAYOUT_JS, Browser
from tests.conftest import REPO
from tests.test_defs import EXPECTED_GRAPH


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
        self.below: list[int] = []  # the processes below `ui` when it was last looked at
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
        """Whether the `ui` process's group, or any process that was below it when it was last looked at (dg dev
        runs in a group of its own), still lives."""
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except ProcessLookupError:
            return any(_alive(pid) for pid in self.below)

    def stop(self, sig: int) -> None:
        """Send ``sig`` to the `ui` process alone (as a supervisor does) and wait for it; it kills what is
        left of dg dev's group before it exits, so every process below it is gone (its zombies reaped) at once."""
        self.below = _descendants(self.proc.pid)
        self.proc.send_signal(sig)
        self.proc.wait(timeout=60)
        deadline = time.monotonic() + 10  # reaping by init, not a speed bound
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the `ui` process and every process below it, by pid and by process group: dg dev runs in a
        group of its own, which a SIGKILL to `ui` cannot pass on (as its SIGTERM handler does), so a test that
        fails before the UI is stopped would leave webserver, daemon and code server running."""
        below = _descendants(self.proc.pid)  # before `ui` dies: then they are re-parented and not found
        self.below = below
        groups = {self.proc.pid}
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                groups.add(os.getpgid(pid))
        for pid in (self.proc.pid, *below):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for group in groups - {os.getpgrp()}:  # never the test's own group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 10  # the kernel ending them, not a speed bound
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, grandchildren ...), read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # after "(comm)": state, ppid
            children.setdefault(parent, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    ui = UI(tmp_path_factory.mktemp("dagster_home"))
    try:
        yield ui
    finally:  # also when a test of the module failed: no process of the UI outlives the module
        ui.kill()
        assert not ui.group_alive(), f"processes of the UI outlived SIGKILL: {ui.below}"


@pytest.fixture(scope="module")
def webserver(ui) -> str:
    return ui.base


def test_graphql_serves_the_full_lineage(webserver):
    data = _graphql(webserver, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")["data"]
    graph = {"/".join(n["assetKey"]["path"]): sorted("/".join(d["path"]) for d in n["dependencyKeys"])
             for n in data["assetNodes"]}
    assert graph == EXPECTED_GRAPH


@pytest.fixture(scope="module")
def report_index(tmp_path_factory) -> Path:
    """A report of a two-family demo warehouse whose "what changed" lists dropped runs with long ids (the
    table that overflowed at 1400 px)."""
    work = tmp_path_factory.mktemp("report_for_browser")
    write_demo(work / "logs", seed=0, n_families=2)
    with duckdb.connect(str(work / "w.duckdb")) as con:
        ingest(work / "logs", con)
        clean(con)
        fit_families(con, FitSettings(bootstrap=8))
        plan_families(con)
        long = "UPDATE clean.points SET run_id = run_id || ? WHERE family = 'atlas' AND n_params < 1e8"
        con.execute(long, ["-resumed-after-preemption-on-node-17-of-the-shared-pool"])
        render_report(load_inputs(con), work / "reports", date=dt.date(2026, 1, 5))
        con.execute(long, ["-then-rerun"])  # every small atlas run is dropped and added under a new long id
        fit_families(con, FitSettings(bootstrap=8))
        plan_families(con)
        return render_report(load_inputs(con), work / "reports", date=dt.date(2026, 1, 6))


def _artefacts(tmp_path: Path) -> list[Path]:
    """Where screenshots are kept: the test's tmp folder, and reports/test-artefacts/ on CI."""
    return [tmp_path] + ([REPO / "reports" / "test-artefacts"] if os.environ.get("CI") else [])


def test_report_and_lineage_in_a_real_browser(webserver, report_index, tmp_path):
    """One headless Chromium at 1400 px: the report (no element past the right edge, every figure loaded, headers
    aligned with their columns) and the Dagster lineage page (no horizontal overflow); screenshots kept."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium is not installed (apt-get install chromium): browser checks skipped")
    _graphql(webserver, "mutation { setNuxSeen }")  # no first-visit community dialog over the graph
    browser = Browser(chromium, tmp_path / "profile")
    try:
        report = browser.open(report_index.as_uri(), 1400)
        browser.wait_for(report, "document.readyState === 'complete' && [...document.images].every(i => i.complete)")
        layout = browser.evaluate(report, LAYOUT_JS)
        lineage = browser.open(f"{webserver}/asset-groups", 1400)
        browser.wait_for(lineage, "!!document.body && document.body.innerText.includes('Materialize all') && "
                                  "/\\breports?\\b/.test(document.body.innerText)", timeout=90)  # the graph is drawn
        graph = browser.evaluate(lineage, LAYOUT_JS)
        shots = {name: browser.screenshot(session, tmp_path / f"{name}.png", full_page=name == "report")
                 for name, session in (("report", report), ("lineage", lineage))}
    finally:
        browser.close()
    for folder in _artefacts(tmp_path)[1:]:
        folder.mkdir(parents=True, exist_ok=True)
        for name in shots:
            shutil.copy(tmp_path / f"{name}.png", folder / f"{name}.png")
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000 for png in shots.values())
    assert "-of-the-shared-pool-then-rerun" in report_index.read_text(encoding="utf-8")  # the long list
    assert layout["width"] == 1400 and layout["scrollWidth"] <= 1400 and not layout["overflow"], layout["overflow"]
    assert len(layout["images"]) >= 17 and all(i["ok"] for i in layout["images"]), layout["images"]
    assert not layout["misaligned"], layout["misaligned"]
    assert graph["scrollWidth"] <= graph["width"] == 1400 and all(i["ok"] for i in graph["images"])


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


@pytest.mark.slow
def test_ui_stops_on_ctrl_c(tmp_path):
    ui = UI(tmp_path)
    try:
        ui.stop(signal.SIGINT)
        assert not ui.group_alive()
        assert ui.proc.returncode == 0 and "stopping the UI (SIGINT)" in "".join(ui.output)
    finally:
        ui.kill()
