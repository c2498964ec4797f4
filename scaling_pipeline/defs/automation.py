"""Nightly schedule and a sensor on the log root; both run the whole graph, which is incremental:
unchanged log files are not re-read and families whose points did not change are not refit."""

import hashlib
import os

import dagster as dg

from scaling_pipeline.lib.formats import discover

from .resources import PipelineSettings

pipeline_job = dg.define_asset_job(
    "scaling_pipeline", selection=dg.AssetSelection.all(),
    tags={"scaling_pipeline/warehouse": "1"},  # production: one run at a time per warehouse (deploy/)
    description="Ingest new/changed logs, clean, refit changed families, plan, publish the report.")

nightly = dg.ScheduleDefinition(
    name="nightly_refit", job=pipeline_job, cron_schedule="0 2 * * *", execution_timezone="UTC",
    description="Every night at 02:00 UTC: refit everything that changed and publish the report.")


def log_root_fingerprint(root) -> str:
    """SHA-256 over (path, size, mtime) of every file the readers would read under ``root``: cheap,
    and changes whenever a log file is added, removed, appended to or rewritten."""
    h = hashlib.sha256()
    for unit in discover(root):
        for member in unit.members:
            st = os.stat(member)
            h.update(f"{os.path.relpath(member, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


@dg.sensor(job=pipeline_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Starts a run when log files under the log root, or the settings file, are added, "
                       "changed or removed.")
def new_logs_sensor(context: dg.SensorEvaluationContext, settings: PipelineSettings):
    root = settings.logs_path
    if not root.is_dir():
        return dg.SkipReason(f"log root {str(root)!r} does not exist")
    fingerprint = log_root_fingerprint(root)
    if (path := settings.settings_path()) is not None:  # a settings change refits too
        st = os.stat(path)
        fingerprint = hashlib.sha256(f"{fingerprint}\0{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
    if fingerprint == context.cursor:
        return dg.SkipReason("no new or changed log files")
    context.update_cursor(fingerprint)
    return dg.RunRequest(run_key=fingerprint)
