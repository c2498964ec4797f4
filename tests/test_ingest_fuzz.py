"""Fuzzing ingest: damaged csv/jsonl/parquet metric files (also a CSV with quoted newlines and a
gzip-compressed one) and manifests, junk in MLflow metric files and W&B history. Properties: ingest
never raises; the damaged unit is ok, partial (row rejections) or quarantined (a file rejection),
always with non-empty, printable reasons of bounded length that start with their location; a line
cut in the middle is never silently accepted; good siblings are always ingested in full.

Each kind keeps one log tree and one DuckDB file across examples, so every example is also an
incremental re-ingest: the damaged unit (sorted first) is re-read, then a good sibling whose bytes
changes every time (one more trailing blank line) is re-read after it."""

from __future__ import annotations

import csv
import gzip
import os

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaling_pipeline.lib.formats import write_logs
from scaling_pipeline.lib.formats.writing import frame_records
from scaling_pipeline.lib.ingest import ingest
from scaling_pipeline.lib.schema import RUN_COLUMNS
from tests.test_formats import ladder

# `make test` runs the fast profile; HYPOTHESIS_PROFILE=nightly runs 1,000 cases per test.
settings.register_profile("fast", max_examples=60, derandomize=True)  # same cases every CI run
settings.register_profile("nightly", max_examples=1000)
FUZZ = settings(settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
LINE_KINDS = {"csv", "csv_quoted", "jsonl", "mlflow", "wandb"}  # metric logs written line by line
MAX_REASON_CHARS = 400  # reasons quote at most EXCERPT_CHARS of the input


@dataclass(frozen=True)
class Template:
    """A log tree and its warehouse: ``target`` is the file to damage, ``unit`` its unit's
    source_path; ``sibling`` a good unit re-read after it."""

    root: Path
    target: Path
    original: bytes
    unit: str
    sibling: Path
    con: duckdb.DuckDBPyConnection
    expected: dict[str, tuple[str, int, int]]  # source_path -> (status, metric rows, run rows)


@dataclass(frozen=True)
class Damage:
    data: bytes
    cut: int | None = None  # truncation point, for truncations


def _target(kind: str, root: Path, paths: list[Path]) -> tuple[Path, str]:
    if kind == "manifest_csv":
        target = root / "runs.csv"
    elif kind == "mlflow":
        target = next(p for p in paths if p.parent.name == "metrics" and p.name == "train_loss")
        return target, target.parent.parent.relative_to(root.parent).as_posix()
    elif kind == "wandb":
        target = next(p for p in paths if p.name == "wandb-history.jsonl")
        return target, target.parent.relative_to(root.parent).as_posix()
    else:
        target = next(p for p in paths if p.suffix == f".{kind.split('_')[0]}" and p.name != "runs.csv")
        if kind == "csv_quoted":  # a note column whose cells hold newlines, commas and quotes
            with open(target, newline="") as handle:
                header, *rows = list(csv.reader(handle))
            with open(target, "w", newline="") as handle:
                csv.writer(handle, lineterminator="\n").writerows(
                    [[*header, "note"], *([*row, f'step {i}\nsaid "ok", then\n\nmore'] for i, row in enumerate(rows))]
                )
        elif kind == "csv_gz":
            packed = target.with_name(target.name + ".gz")
            packed.write_bytes(gzip.compress(target.read_bytes()))
            target.unlink()
            target = packed
    return target, target.relative_to(root.parent).as_posix()


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Template]]:
    runs, metrics = ladder()
    good, bad = runs.run_id[0], runs.run_id[1]
    out = {}
    for kind in ("csv", "csv_quoted", "csv_gz", "jsonl", "parquet", "manifest_csv", "manifest_yaml", "mlflow",
                 "wandb"):
        base = tmp_path_factory.mktemp(kind)
        root, target_dir, target_runs = (
            base / "logs",
            base / "logs" / "a_target",
            runs[runs.run_id == bad],
        )
        sibling = write_logs(
            "jsonl", root / "b_good", runs[runs.run_id == good], metrics[metrics.run_id == good]
        )[-1]
        if kind == "manifest_yaml":
            target_dir.mkdir()
            records = frame_records(
                target_runs, [c for c in RUN_COLUMNS if c[0] != "extra"], extras=True
            )
            (target_dir / "runs.yaml").write_text(
                yaml.safe_dump({"runs": records}, allow_unicode=True)
            )
            target, unit = target_dir / "runs.yaml", "a_target/runs.yaml"
        else:
            fmt = "csv" if kind.startswith(("manifest_csv", "csv")) else kind
            paths = write_logs(fmt, target_dir, target_runs, metrics[metrics.run_id == bad])
            target, unit = _target(kind, target_dir, paths)
        con = duckdb.connect(str(base / "warehouse.duckdb"))
        assert ingest(root, con).rejections == 0
        expected = {
            row[0]: row[1:]
            for row in con.execute(
                "SELECT source_path, status, n_metric_rows, n_run_rows FROM raw.files"
            ).fetchall()
        }
        out[kind] = Template(root, target, target.read_bytes(), unit, sibling, con, expected)
    yield out
    for template in out.values():
        template.con.close()


def damages(original: bytes) -> st.SearchStrategy[Damage]:
    """Truncations, overwritten/inserted bytes, junk lines, or entirely random content."""
    size = len(original)
    line_starts = [0] + [i + 1 for i, byte in enumerate(original) if byte == ord("\n")]
    junk_line = st.text(
        st.characters(blacklist_characters="\n", blacklist_categories=["Cs"]), max_size=40
    )
    return st.one_of(
        st.integers(0, size - 1).map(lambda cut: Damage(original[:cut], cut)),
        st.lists(
            st.tuples(st.integers(0, size - 1), st.integers(0, 255)), min_size=1, max_size=4
        ).map(lambda edits: Damage(_overwrite(original, edits))),
        st.tuples(st.integers(0, size), st.binary(min_size=1, max_size=16)).map(
            lambda ins: Damage(original[: ins[0]] + ins[1] + original[ins[0] :])
        ),
        st.tuples(st.sampled_from(line_starts), junk_line).map(
            lambda j: Damage(original[: j[0]] + (j[1] + "\n").encode() + original[j[0] :])
        ),
        st.binary(max_size=300).map(Damage),
        st.text(max_size=300).map(lambda text: Damage(text.encode())),
    )


def _overwrite(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, byte in edits:
        out[position] = byte
    return bytes(out)


def must_reject(kind: str, original: bytes, damage: Damage) -> bool:
    """A cut inside a line of a metric log (or any cut of a Parquet file) must not pass as ok."""
    if damage.cut is None:
        return False
    if kind in ("parquet", "csv_gz"):  # a cut gzip stream is damaged whatever it cut
        return True
    if kind not in LINE_KINDS:
        return False
    if damage.cut == 0:  # empty: table files are quarantined; an empty MLflow metric file is fine
        return kind != "mlflow"
    before = original[damage.cut - 1 : damage.cut]
    if kind in ("jsonl", "wandb") and original[damage.cut - 1 : damage.cut + 1] == b"}\n":
        return False  # only the newline is lost: the last object is complete
    return before != b"\n"


def check(template: Template, kind: str, damage: Damage) -> None:
    template.target.write_bytes(damage.data)
    with open(template.sibling, "ab") as handle:  # new bytes, same rows: re-read after the target
        handle.write(b"\n")
    con = template.con
    summary = ingest(template.root, con)
    files = {
        row[0]: row[1:]
        for row in con.execute(
            "SELECT source_path, status, n_metric_rows, n_run_rows, n_rejections FROM raw.files"
        ).fetchall()
    }
    assert summary.units_seen == len(files) == len(template.expected)
    for path, expected in template.expected.items():
        if path == template.unit:
            continue
        assert files[path][:3] == expected, path  # good siblings, in full
        assert (
            con.execute(
                "SELECT count(*) FROM raw.metrics WHERE source_path = ?", [path]
            ).fetchone()[0]
            == expected[1]
        )
    status, n_metrics, n_runs, n_rejections = files[template.unit]
    rejections = con.execute(
        "SELECT location, reason, scope FROM raw.quarantine WHERE source_path = ?", [template.unit]
    ).fetchall()
    assert len(rejections) == n_rejections
    assert all(
        reason.strip() and reason.startswith(location) and reason.isprintable() and len(reason) <= MAX_REASON_CHARS
        for location, reason, _ in rejections
    ), rejections
    scopes = sorted({scope for _, _, scope in rejections})
    partial = [["field"], ["row"], ["field", "row"]]  # 'field': a run metadata value left out
    assert (status, scopes) == ("ok", []) or (status == "partial" and scopes in partial) or (
        status == "quarantined" and "file" in scopes and n_metrics == n_runs == 0
    )
    assert (
        con.execute(
            "SELECT count(*), count(run_id), count(step) FROM raw.metrics WHERE source_path = ?",
            [template.unit],
        ).fetchone()
        == (n_metrics,) * 3
    )
    assert (
        con.execute(
            "SELECT count(*) FROM raw.runs WHERE source_path = ?", [template.unit]
        ).fetchone()[0]
        == n_runs
    )
    if must_reject(kind, template.original, damage):
        assert status != "ok", (damage, rejections)


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["csv", "csv_quoted", "csv_gz", "jsonl", "parquet"]))
def test_damaged_metric_tables(
    templates: dict[str, Template], data: st.DataObject, kind: str
) -> None:
    template = templates[kind]
    check(template, kind, data.draw(damages(template.original)))


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["manifest_csv", "manifest_yaml"]))
def test_damaged_manifests(templates: dict[str, Template], data: st.DataObject, kind: str) -> None:
    template = templates[kind]
    check(template, kind, data.draw(damages(template.original)))


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["mlflow", "wandb"]))
def test_junk_in_run_directories(
    templates: dict[str, Template], data: st.DataObject, kind: str
) -> None:
    template = templates[kind]
    check(template, kind, data.draw(damages(template.original)))
