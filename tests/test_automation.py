"""The nightly schedule and the new-logs sensor, evaluated with real contexts."""

from __future__ import annotations

import shutil

import dagster as dg

from scaling_pipeline.defs.automation import new_logs_sensor, nightly
from scaling_pipeline.defs.resources import PipelineSettings


def test_nightly_schedule_targets_the_whole_graph():
    from scaling_pipeline.definitions import defs

    assert nightly.cron_schedule == "0 2 * * *"
    ctx = dg.build_schedule_context(scheduled_execution_time=None)
    requests = list(nightly.evaluate_tick(ctx).run_requests)
    assert len(requests) == 1
    job = defs.resolve_job_def("scaling_pipeline")
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert {"raw/metrics", "fits/chinchilla", "plans/allocations", "reports/planning_report"} <= keys


def test_sensor_fires_on_new_and_changed_logs_only(demo_dir, tmp_path):
    logs = tmp_path / "logs"
    shutil.copytree(demo_dir / "csv", logs / "csv")
    settings = PipelineSettings(logs_dir=str(logs))

    def tick(cursor):
        ctx = dg.build_sensor_context(cursor=cursor, resources={"settings": settings})
        result = new_logs_sensor(ctx)
        return result, ctx.cursor

    first, cursor = tick(None)
    assert isinstance(first, dg.RunRequest) and first.run_key == cursor
    again, cursor2 = tick(cursor)
    assert isinstance(again, dg.SkipReason) and cursor2 == cursor
    # a new run's log appears
    src = next(p for p in (logs / "csv").glob("*.csv") if p.name != "runs.csv")
    shutil.copy(src, logs / "csv" / "new-run.csv")
    fired, cursor3 = tick(cursor)
    assert isinstance(fired, dg.RunRequest) and cursor3 != cursor
    # an existing file grows
    with open(src, "a") as f:
        f.write(src.read_text().splitlines()[-1] + "\n")
    fired, cursor4 = tick(cursor3)
    assert isinstance(fired, dg.RunRequest) and cursor4 != cursor3
    # a file that is not a log does not count
    (logs / "notes.txt").write_text("hello")
    skipped, _ = tick(cursor4)
    assert isinstance(skipped, dg.SkipReason)
    # the settings file beside the logs is part of what the sensor watches
    (logs / "scaling-pipeline.toml").write_text("[clean]\nmin_tokens = 1e9\n")
    fired, cursor5 = tick(cursor4)
    assert isinstance(fired, dg.RunRequest) and cursor5 != cursor4


def test_sensor_skips_missing_root(tmp_path):
    ctx = dg.build_sensor_context(resources={"settings": PipelineSettings(logs_dir=str(tmp_path / "absent"))})
    assert isinstance(new_logs_sensor(ctx), dg.SkipReason)
