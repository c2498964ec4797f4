"""Report folders: ``reports/latest`` and every dated folder stay whole when a render is SIGKILLed at any step,
and the hidden work folders a killed render leaves are removed by the next render (never a live render's)."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from scaling_pipeline.lib.reporting import load_inputs, render_report
from scaling_pipeline.lib.reporting import store

DAY1, DAY2 = dt.date(2026, 1, 5), dt.date(2026, 1, 6)
REPORT_FILES = {"index.html", "summary.json", "quarantine.csv"}


@pytest.fixture(scope="module")
def inputs():
    with duckdb.connect() as con:  # an empty warehouse: the page without families renders in milliseconds
        return load_inputs(con)


def _whole(root: Path) -> str:
    """Every dated folder holds a complete report and ``latest`` resolves to one of them; its name."""
    dated = [p for _, p in store.dated_folders(root)]
    for folder in dated:
        assert REPORT_FILES <= {p.name for p in folder.iterdir()}, folder
    latest = root / "latest"
    assert latest.is_symlink() and latest.resolve() in {p.resolve() for p in dated}, os.readlink(latest)
    assert REPORT_FILES <= {p.name for p in latest.iterdir()}
    return latest.resolve().name


def _render_killed_at(inputs, root: Path, step: int) -> int:
    """In a forked child, re-render DAY1 (the date ``latest`` points at) then render DAY2, SIGKILLing the child
    just before its ``step``-th file-system change; the child's exit code."""
    def child():
        calls = 0

        def killing(fn):
            def wrapper(*args, **kwargs):
                nonlocal calls
                calls += 1
                if calls == step:
                    os.kill(os.getpid(), signal.SIGKILL)
                return fn(*args, **kwargs)
            return wrapper

        for owner, name in [(os, "mkdir"), (os, "rename"), (os, "replace"), (os, "symlink"), (os, "unlink"),
                            (shutil, "rmtree"), (store, "_exchange"), (Path, "write_text"), (Path, "write_bytes")]:
            setattr(owner, name, killing(getattr(owner, name)))
        render_report(inputs, root, date=DAY1)
        render_report(inputs, root, date=DAY2)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(60)
    return proc.exitcode


def test_latest_and_dated_folders_stay_whole_when_a_render_is_killed_at_any_step(inputs, tmp_path):
    base = tmp_path / "base"
    render_report(inputs, base, date=DAY1)
    seen, left = set(), 0
    for step in range(1, 100):
        root = tmp_path / f"killed-at-{step}"
        shutil.copytree(base, root, symlinks=True)
        code = _render_killed_at(inputs, root, step)
        seen.add(_whole(root))
        if code == 0:  # the child ran to the end: every step before was a kill point
            break
        assert code == -signal.SIGKILL
        left += bool(list(root.glob(".*")))  # the killed render's work folder
        render_report(inputs, root, date=DAY2)  # the next render cleans up after the killed one
        assert _whole(root) == DAY2.isoformat()
        assert not list(root.glob(".*")), sorted(root.glob(".*"))
    else:
        pytest.fail("the render never finished")
    assert step > 10 and left > 5 and seen == {DAY1.isoformat(), DAY2.isoformat()}
    assert _whole(root) == DAY2.isoformat() and not list(root.glob(".*"))


def test_a_render_removes_dead_renders_work_folders_only(inputs, tmp_path):
    root = tmp_path / "reports"
    root.mkdir()
    done = subprocess.Popen([sys.executable, "-c", ""])
    done.wait()  # reaped: its pid is no live process
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host, dead = store._HOST, done.pid
        stale = [root / f".{DAY1}.partial-{host}-{dead}", root / f".{DAY1}.partial-{dead}",  # older renders: pid only
                 root / f".{DAY1}.old-{host}-{dead}"]
        kept = [root / f".{DAY1}.partial-{host}-{live.pid}",  # a render still running
                root / f".{DAY1}.partial-other-host-{dead}",  # another machine's: its pids mean nothing here
                root / ".keep"]
        for folder in stale + kept:
            folder.mkdir()
            (folder / "index.html").write_text("half")
        (root / f".latest.partial-{host}-{dead}").symlink_to(kept[0].name)  # a link: removed, not its target
        render_report(inputs, root, date=DAY1)
        assert sorted(p.name for p in root.iterdir()) == sorted([DAY1.isoformat(), "latest", *(p.name for p in kept)])
        assert all((p / "index.html").read_text() == "half" for p in kept)
    finally:
        live.kill()
        live.wait()


def test_without_an_atomic_exchange_a_rerender_still_replaces_the_dated_folder(inputs, tmp_path, monkeypatch):
    root = tmp_path / "reports"
    render_report(inputs, root, date=DAY1)
    (root / DAY1.isoformat() / "stale.txt").write_text("from the first render")
    monkeypatch.setattr(store, "_exchange", lambda a, b: False)  # e.g. not Linux: two renames
    render_report(inputs, root, date=DAY1)
    assert _whole(root) == DAY1.isoformat()
    assert not (root / DAY1.isoformat() / "stale.txt").exists() and not list(root.glob(".*"))
