"""``ui`` (the Dagster UI on this project) and ``demo-data`` (a synthetic ladder)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .common import UserError


UI_STOP_GRACE = 5.0  # `ui`: seconds between the stop request and killing what is left



def cmd_ui(args: argparse.Namespace) -> int:
    import os
    import signal
    import subprocess

    home = Path(os.environ.get("DAGSTER_HOME") or ".dagster").resolve()
    if not (home / "dagster.yaml").is_file():
        raise UserError(f"{home / 'dagster.yaml'} is missing (run `make install`, or set DAGSTER_HOME to a folder "
                        "holding one)")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "DAGSTER_HOME": str(home), "VIRTUAL_ENV": sys.prefix,
           "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])}
    proc = subprocess.Popen([str(bin_dir / "dg"), "dev", "--host", args.host, "--port", str(args.port)], env=env,
                            start_new_session=True)  # its own process group: stopped as one below
    stopping: list[float] = []

    def stop(signo, _frame) -> None:
        if not stopping:
            print(f"stopping the UI ({signal.Signals(signo).name})", file=sys.stderr, flush=True)
            stopping.append(time.monotonic())
        _signal_group(proc.pid, signal.SIGINT)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    while proc.poll() is None and not (stopping and time.monotonic() - stopping[0] > UI_STOP_GRACE):
        time.sleep(0.1)
    _signal_group(proc.pid, signal.SIGKILL)  # whatever dg dev left behind (code server, daemon, webserver)
    proc.wait()
    return 0 if stopping else proc.returncode



def _signal_group(pgid: int, sig: int) -> None:
    import os

    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass



def cmd_demo(args: argparse.Namespace) -> int:
    from scaling_pipeline.lib.simulate import write_demo

    try:
        summary = write_demo(args.dir, seed=args.seed, fmt=args.format, n_families=args.families)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(f"wrote demo ladder to {args.dir} (seed {args.seed}, format {args.format}): {summary}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from scaling_pipeline.lib.reporting.compare import ReportNotFound, compare_reports

    try:
        print(compare_reports(args.report_a, args.report_b), end="")
    except ReportNotFound as exc:
        raise UserError(str(exc)) from None
    return 0
