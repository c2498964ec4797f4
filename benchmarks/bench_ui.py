"""Nightly path through the UI: runs of the `scaling_pipeline` job launched over the webserver's GraphQL.

    python benchmarks/bench_ui.py [--repeat N] [--seed 0] [--no-sensor]

Writes the default demo (``write_demo(logs, seed)``) to a temp dir, copies the project's instance
file (``deploy/dagster.dev.yaml``) to a temp ``$DAGSTER_HOME/dagster.yaml``, and starts the real UI
path, ``scaling-pipeline ui --port P`` (``dg dev``: webserver, daemon, code server; cwd = repo root,
SCALING_LOGS / SCALING_DB / SCALING_REPORTS in the temp dir). Then it launches the job with the
GraphQL ``launchRun`` mutation, as the Launchpad does (the run is queued; the daemon dequeues it and
the code server starts its run worker), and polls the run until it ends:

1. first run (everything is read and fitted);
2. ``--repeat N`` times: a run with no change, then a run after one new run was added to the logs (a
   copy of a completed W&B run directory, ``config.yaml`` + ``wandb-history.jsonl``, under a new run
   id with its losses i% lower in the i-th: one new unit to ingest, one changed point, its family refit);
3. unless ``--no-sensor``: a run launched by the daemon. The nightly schedule cannot be ticked on
   demand (its cron is 02:00 UTC), so ``new_logs_sensor`` is started with the GraphQL ``startSensor``
   mutation: its first tick (no cursor yet) requests a run with no change, through the same run queue
   and run worker as the schedule's.

Wall = launch (or sensor start) to SUCCESS seen by polling every 0.25 s; dequeue = launch to the
run's RUN_STARTING event (the launch mutation, then the daemon's queued run coordinator, which looks
every ``dequeue_interval_seconds`` of deploy/dagster.dev.yaml, takes the run and asks the code server to
start it); worker start = RUN_STARTING to RUN_START (the run worker's process start, imports and code
load); exec = run start to run end; steps = sum of the step durations (``stepStats``). For the sensor's
run also: when its tick started, how long the tick took (evaluation, run submission) and when the queue took
the run. Every result line carries the load average.
Loopback only; the UI is stopped with SIGTERM at the end (it stops its whole process group).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JOB = "scaling_pipeline"
SENSOR = "new_logs_sensor"
POLL_SECONDS = 0.25
START_TIMEOUT = 300.0  # the UI up and the code location loaded
RUN_TIMEOUT = 900.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy

RUN_FIELDS = """status startTime endTime
  stepStats { stepKey startTime endTime
    materializations { assetKey { path }
      metadataEntries { label ... on JsonMetadataEntry { jsonString } ... on IntMetadataEntry { intValue } } } }"""


@dataclass
class Result:
    label: str
    wall: float
    dequeue: float  # launch -> the daemon dequeues and launches the run (RUN_STARTING)
    worker: float  # RUN_STARTING -> RUN_START (the run worker's process start, imports, code load)
    exec: float
    steps: dict[str, float]
    meta: dict[str, object]
    load: float = field(default_factory=lambda: os.getloadavg()[0])


class UI:
    """``scaling-pipeline ui`` on a free loopback port, with DAGSTER_HOME and the pipeline's paths in ``work``."""

    def __init__(self, work: Path, logs: Path):
        home = work / "dagster_home"
        home.mkdir()
        shutil.copy(REPO / "deploy" / "dagster.dev.yaml", home / "dagster.yaml")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DAGSTER_HOME": str(home), "SCALING_LOGS": str(logs),
               "SCALING_DB": str(work / "warehouse.duckdb"), "SCALING_REPORTS": str(work / "reports"),
               "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
        env.pop("VIRTUAL_ENV", None)
        self.log = work / "ui.log"
        exe = Path(sys.executable).with_name("scaling-pipeline")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([str(exe), "ui", "--host", "127.0.0.1", "--port", str(self.port)],
                                         env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.location, self.repository = self._wait_loaded()

    def gql(self, query: str, variables: dict | None = None) -> dict:
        req = urllib.request.Request(f"{self.base}/graphql",
                                     data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                     headers={"Content-Type": "application/json"})
        with _OPENER.open(req, timeout=60) as resp:
            body = json.loads(resp.read())
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def _wait_loaded(self) -> tuple[str, str]:
        """Wait for the webserver and the code location; return the location and repository holding the
        job (`dg dev` names the location after the project's folder)."""
        deadline = time.monotonic() + START_TIMEOUT
        query = ("{ repositoriesOrError { ... on RepositoryConnection {"
                 " nodes { name location { name } jobs { name } } } } }")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                nodes = self.gql(query)["repositoriesOrError"].get("nodes") or []
                for node in nodes:
                    if any(j["name"] == JOB for j in node["jobs"]):
                        return node["location"]["name"], node["name"]
            except (OSError, RuntimeError):
                pass
            time.sleep(0.5)
        self.stop()
        raise SystemExit("the UI did not load the code location:\n"
                         + self.log.read_text(errors="replace")[-3000:])

    def selector(self) -> dict:
        return {"repositoryLocationName": self.location, "repositoryName": self.repository}

    def launch(self) -> str:
        data = self.gql("""mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
            __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
            ... on RunConfigValidationInvalid { errors { message } } } }""",
                        {"p": {"selector": {**self.selector(), "jobName": JOB}}})["launchRun"]
        if data["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"launchRun failed: {data}")
        return data["run"]["runId"]

    def run(self, run_id: str) -> dict:
        return self.gql(f"query($id: ID!) {{ runOrError(runId: $id) {{ ... on Run {{ {RUN_FIELDS} }} }} }}",
                        {"id": run_id})["runOrError"]

    def dequeued_at(self, run_id: str) -> float | None:
        """Wall clock when the daemon took the run off the queue and launched it (RUN_STARTING)."""
        data = self.gql("""query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection {
            events { __typename ... on MessageEvent { timestamp } } } } }""", {"id": run_id})["logsForRun"]
        events = data.get("events") or []
        stamps = [float(e["timestamp"]) / 1000 for e in events if e["__typename"] == "RunStartingEvent"]
        return stamps[0] if stamps else None

    def start_sensor(self, name: str) -> None:
        data = self.gql("""mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
            __typename ... on PythonError { message } } }""",
                        {"s": {**self.selector(), "sensorName": name}})["startSensor"]
        if data["__typename"] != "Sensor":
            raise RuntimeError(f"startSensor failed: {data}")

    def sensor_run_id(self, name: str) -> str | None:
        data = self.gql("""query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results { runId } } } }""",
                        {"f": {"tags": [{"key": "dagster/sensor_name", "value": name}]}})["runsOrError"]
        results = data.get("results") or []
        return results[0]["runId"] if results else None

    def sensor_tick(self, name: str, run_id: str) -> tuple[float, float] | None:
        """(start, end) wall clock of the sensor tick that requested ``run_id``."""
        data = self.gql("""query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor {
            sensorState { ticks(limit: 10) { timestamp endTimestamp runIds } } } } }""",
                        {"s": {**self.selector(), "sensorName": name}})["sensorOrError"]
        for tick in (data.get("sensorState") or {}).get("ticks") or []:
            if run_id in tick["runIds"]:
                return tick["timestamp"], tick["endTimestamp"] or tick["timestamp"]
        return None

    def stop(self) -> None:
        """SIGTERM to `scaling-pipeline ui` (it stops its process group); SIGKILL the group if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


def _metadata(run: dict) -> dict[str, object]:
    """What the run did: units ingested, families refit, report figures redrawn."""
    out: dict[str, object] = {}
    for step in run["stepStats"]:
        for mat in step["materializations"]:
            key = "/".join(mat["assetKey"]["path"])
            for e in mat["metadataEntries"]:
                value = json.loads(e["jsonString"]) if "jsonString" in e else e.get("intValue")
                if (key, e["label"]) in {("raw/metrics", "ingest_units_ingested"), ("fits/chinchilla", "refit"),
                                         ("reports/planning_report", "figures_redrawn")}:
                    out[e["label"]] = value
    return out


def wait_for(ui: UI, run_id: str, t0: float, label: str) -> Result:
    """Poll the run until it ends; ``t0`` is the wall clock (time.time) at launch, comparable with the
    run's own timestamps."""
    deadline = t0 + RUN_TIMEOUT
    while True:
        run = ui.run(run_id)
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            wall = time.time() - t0
            break
        if time.time() > deadline:
            raise SystemExit(f"{label}: run {run_id} still {run['status']} after {RUN_TIMEOUT:.0f} s")
        time.sleep(POLL_SECONDS)
    if run["status"] != "SUCCESS":
        raise SystemExit(f"{label}: run {run_id} ended {run['status']}; the UI's output ends with:\n"
                         + ui.log.read_text(errors="replace")[-3000:])
    steps = {s["stepKey"]: s["endTime"] - s["startTime"] for s in run["stepStats"] if s["startTime"] and s["endTime"]}
    dequeued = ui.dequeued_at(run_id)
    if dequeued is None:  # not seen (should not happen): all of it counts as worker start
        dequeued = t0
    return Result(label, wall, dequeued - t0, run["startTime"] - dequeued, run["endTime"] - run["startTime"], steps,
                  _metadata(run))


def add_run(logs: Path, index: int) -> str:
    """Copy a completed W&B run directory under a new run id, its losses ``index`` % lower (a better run at
    the same N and D than the original and the earlier copies: it becomes the family's point there, so the
    family is refit); return the new run id."""
    src = next(p for p in sorted((logs / "wandb").iterdir())
               if (p / "config.yaml").is_file()
               and "status:\n  desc: null\n  value: completed\n" in (p / "config.yaml").read_text())
    new_id = f"{src.name}-copy{index}"
    dst = logs / "wandb" / new_id
    shutil.copytree(src, dst)
    config = (dst / "config.yaml").read_text()
    assert f"value: {src.name}\n" in config, "unexpected W&B config layout"
    (dst / "config.yaml").write_text(config.replace(f"value: {src.name}\n", f"value: {new_id}\n", 1))
    history = dst / "wandb-history.jsonl"
    rows = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    for row in rows:
        for key in ("train_loss", "eval_loss"):
            if isinstance(row.get(key), float):
                row[key] *= 1 - index / 100
    history.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return new_id


def _executor() -> str:
    from scaling_pipeline.definitions import defs

    return defs.resolve_job_def(JOB).executor_def.name


def _print_table(results: list[Result]) -> None:
    print("| run | wall s | dequeue s | worker start s | exec s | steps s | ingested | refit | figures redrawn "
          "| load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.label} | {r.wall:.1f} | {r.dequeue:.1f} | {r.worker:.1f} | {r.exec:.1f} "
              f"| {sum(r.steps.values()):.1f} | {r.meta.get('ingest_units_ingested')} | {r.meta.get('refit')} "
              f"| {r.meta.get('figures_redrawn')} | {r.load:.2f} |")
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(r.label.split(" #")[0], []).append(r)
    if any(len(g) > 1 for g in groups.values()):
        print()
        print("| run | n | median wall s (min-max) | median dequeue s | median worker start s | median exec s |")
        print("|---|---|---|---|---|---|")
        for label, g in groups.items():
            walls = [r.wall for r in g]
            med = {k: statistics.median(getattr(r, k) for r in g) for k in ("dequeue", "worker", "exec")}
            print(f"| {label} | {len(g)} | {statistics.median(walls):.1f} ({min(walls):.1f}-{max(walls):.1f}) "
                  f"| {med['dequeue']:.1f} | {med['worker']:.1f} | {med['exec']:.1f} |")
    print()
    labels = list(groups)
    print("| step | " + " | ".join(f"{label} (median) s" for label in labels) + " |")
    print("|---|" + "---|" * len(labels))
    keys = sorted({k for r in results for k in r.steps}, key=lambda k: -results[0].steps.get(k, 0.0))
    for key in keys:
        cells = []
        for label in labels:
            values = [r.steps[key] for r in groups[label] if key in r.steps]
            cells.append(f"{statistics.median(values):.2f}" if values else "-")
        print(f"| {key} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="no-change + one-new-run pairs (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-sensor", action="store_true", help="skip the run launched by the daemon's sensor")
    args = parser.parse_args()
    from scaling_pipeline.lib.simulate import write_demo

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; nproc {len(os.sched_getaffinity(0))}, "
          f"{mem:.1f} GiB RAM, {platform.platform()}, python {platform.python_version()}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; executor of {JOB!r}: {_executor()}; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench_ui_") as tmp:
        work = Path(tmp)
        logs = work / "logs"
        print(f"# demo: {write_demo(logs, seed=args.seed)}")
        t0 = time.perf_counter()
        ui = UI(work, logs)
        try:
            print(f"# UI up and code location loaded in {time.perf_counter() - t0:.1f} s (port {ui.port})")
            runs = [("first run", None)]
            for i in range(1, args.repeat + 1):
                runs += [(f"no change #{i}", None), (f"one new run #{i}", i)]
            for label, new in runs:
                if new is not None:
                    add_run(logs, new)
                t0 = time.time()
                results.append(wait_for(ui, ui.launch(), t0, label))
                print(f"# {label}: {results[-1].wall:.1f} s (load {results[-1].load:.2f})", flush=True)
            if not args.no_sensor:
                t0 = time.time()
                ui.start_sensor(SENSOR)
                run_id = None
                while run_id is None:
                    if time.time() - t0 > RUN_TIMEOUT:
                        raise SystemExit(f"{SENSOR} requested no run within {RUN_TIMEOUT:.0f} s")
                    time.sleep(POLL_SECONDS)
                    run_id = ui.sensor_run_id(SENSOR)
                results.append(wait_for(ui, run_id, t0, "no change, daemon (sensor tick)"))
                print(f"# sensor run: {results[-1].wall:.1f} s", flush=True)
                tick = ui.sensor_tick(SENSOR, run_id)
                if tick is not None:  # where the time before the run starts goes
                    r = results[-1]
                    print(f"# sensor: tick started {tick[0] - t0:.1f} s after startSensor (the sensor daemon's loop), "
                          f"evaluated in {tick[1] - tick[0]:.1f} s, run dequeued {t0 + r.dequeue - tick[1]:.1f} s "
                          f"after the tick; tick start to run end {t0 + r.wall - tick[0]:.1f} s", flush=True)
        finally:
            ui.stop()
        print()
        _print_table(results)
    print(f"\n# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
