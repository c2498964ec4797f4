"""Awkward and hostile inputs, on real files and a real DuckDB file: symbolic links out of the log
root, loops and dangling links; YAML alias bombs; what quarantine reasons quote of a bad line;
gzip-compressed logs; CSV fields with quoted newlines; garbled TensorBoard event files; over-long
JSON lines."""

from __future__ import annotations

import csv
import gzip
import json
import os
import tracemalloc
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from scaling_pipeline.lib.formats import (
    create_staging,
    discover,
    read_unit,
    safe_yaml,
    write_logs,
)
from scaling_pipeline.lib.formats.common import EXCERPT_CHARS, excerpt, shorten
from scaling_pipeline.lib.ingest import ingest
from tests.test_formats import ladder, read_one, write_tb

SECRET = "root:x:0:0:SECRET-LINE:/root:/bin/bash"


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield connection
    connection.close()


def all_text(con: duckdb.DuckDBPyConnection) -> str:
    """Every cell of every raw table, as text."""
    tables = [f"raw.{t}" for (t,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw'").fetchall()]
    return "\n".join(repr(row) for table in tables for row in con.execute(f"SELECT * FROM {table}").fetchall())


# ------------------------------------------------------------------------------------------------
# symbolic links
# ------------------------------------------------------------------------------------------------


def link_tree(tmp_path: Path) -> Path:
    """A log root with links out of it, loops, a dangling link, and links that stay inside."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "passwd").write_text(SECRET + "\n")
    (outside / "dir" / "m.csv").write_text(f"step,loss\n1,2.0\n# {SECRET}\n")
    root = tmp_path / "logs"
    (root / "sub").mkdir(parents=True)
    (root / "good.csv").write_text("step,loss\n1,2.0\n2,1.5\n")
    (root / "runs_dir").mkdir()
    (root / "runs_dir" / "r.jsonl").write_text('{"step": 1, "loss": 3.0}\n')
    (root / ".store").mkdir()
    (root / ".store" / "x.csv").write_text("step,loss\n1,4.0\n")
    (root / "leak.csv").symlink_to(outside / "passwd")
    (root / "sneaky.csv").symlink_to(Path("sub") / ".." / ".." / "outside" / "passwd")  # relative, leaves
    (root / "outside_dir").symlink_to(outside / "dir")
    (root / "loop.csv").symlink_to(root / "loop.csv")
    (root / "dangling.jsonl").symlink_to(root / "missing.jsonl")
    (root / "sub" / "up").symlink_to("..")
    (root / "alias.csv").symlink_to("good.csv")  # inside: read once, as good.csv
    (root / "latest").symlink_to("runs_dir")  # inside: read once, as runs_dir
    (root / "x.csv").symlink_to(Path(".store") / "x.csv")  # inside, target not read otherwise
    run = root / "mlruns" / "0" / "r1"
    (run / "metrics").mkdir(parents=True)
    (run / "meta.yaml").write_text("run_name: r1\n")
    (run / "metrics" / "train_loss").write_text("1 2.0 1\n")
    (run / "metrics" / "eval_loss").symlink_to(outside / "passwd")
    return root


SKIPPED = {
    "leak.csv": "link_outside_log_root",
    "sneaky.csv": "link_outside_log_root",
    "outside_dir": "link_outside_log_root",
    "loop.csv": "symlink_loop",
    "dangling.jsonl": "dangling_link",
    "sub/up": "symlink_loop",
    "mlruns/0/r1/metrics/eval_loss": "link_outside_log_root",
}


def test_discovery_lists_links_it_does_not_follow_and_reads_inside_links_once(tmp_path: Path) -> None:
    root = link_tree(tmp_path)
    units = {u.path.relative_to(root).as_posix(): u for u in discover(root)}
    skipped = {rel: u.skipped for rel, u in units.items() if u.reader == "skipped"}
    assert {rel: reason.split("(")[1].split(")")[0] for rel, reason in skipped.items()} == SKIPPED
    assert all(units[rel].members == () and str(tmp_path) not in reason for rel, reason in skipped.items())
    read = {rel: u.reader for rel, u in units.items() if u.reader != "skipped"}
    assert read == {"good.csv": "csv", "runs_dir/r.jsonl": "jsonl", "x.csv": "csv", "mlruns/0/r1": "mlflow"}
    assert [m.name for m in units["mlruns/0/r1"].members] == ["meta.yaml", "train_loss"]


def test_ingest_quarantines_skipped_links_without_reading_them(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    root = link_tree(tmp_path)
    summary = ingest(root, con)
    assert summary.per_reader["skipped"] == len(SKIPPED)
    quarantine = dict(con.execute(
        "SELECT source_path, reason FROM raw.quarantine WHERE reader = 'skipped' AND scope = 'file'").fetchall())
    assert {rel: code in quarantine[rel] for rel, code in SKIPPED.items()} == dict.fromkeys(SKIPPED, True)
    assert "SECRET" not in all_text(con)
    metrics = con.execute("SELECT source_path, step, train_loss FROM raw.metrics ORDER BY ALL").fetchall()
    assert metrics == [
        ("good.csv", 1, 2.0), ("good.csv", 2, 1.5), ("mlruns/0/r1", 1, 2.0),
        ("runs_dir/r.jsonl", 1, 3.0), ("x.csv", 1, 4.0),
    ]
    again = ingest(root, con)
    assert (again.units_unchanged, again.units_ingested) == (summary.units_seen, 0)
    (root / "dangling.jsonl").unlink()
    (root / "dangling.jsonl").symlink_to(tmp_path / "outside" / "passwd")  # same entry, new reason: re-listed
    assert ingest(root, con).units_ingested == 1
    reason = con.execute("SELECT reason FROM raw.quarantine WHERE source_path = 'dangling.jsonl'").fetchone()[0]
    assert "link_outside_log_root" in reason and "SECRET" not in all_text(con)


def test_fifo_named_like_a_log_is_listed_not_opened(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    root = tmp_path / "logs"
    root.mkdir()
    os.mkfifo(root / "pipe.csv")  # opening it for reading would block
    (root / "pipe_link.jsonl").symlink_to("pipe.csv")
    (root / "m.csv").write_text("step,loss\n1,2.0\n")
    ingest(root, con)
    assert con.execute("SELECT source_path, status FROM raw.files ORDER BY 1").fetchall() == [
        ("m.csv", "ok"), ("pipe.csv", "quarantined"), ("pipe_link.jsonl", "quarantined")]
    assert all("not_a_regular_file" in r for (r,) in con.execute("SELECT reason FROM raw.quarantine").fetchall())


# ------------------------------------------------------------------------------------------------
# YAML
# ------------------------------------------------------------------------------------------------

LAUGHS = "\n".join(
    [f'a: &a [{", ".join(["lol"] * 9)}]']
    + [f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")]
)  # the classic billion laughs: 9**9 'lol's in ~500 bytes


def bomb_manifest(path: Path) -> Path:
    """A runs.yaml whose one run carries the billion laughs as extra fields."""
    body = "\n".join("    " + line for line in LAUGHS.splitlines())
    path.write_text(f"runs:\n  - run_id: r1\n    n_params: 1000000\n{body}\n")
    return path


def test_billion_laughs_manifest_is_quarantined_in_little_memory(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    path = bomb_manifest(tmp_path / "runs.yaml")
    assert path.stat().st_size < 600
    tracemalloc.start()
    try:
        report = read_one(path, con)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.status == "quarantined"
    (rejection,) = report.rejections
    assert f"at most {safe_yaml.MAX_YAML_NODES} nodes with aliases expanded" in rejection.reason
    assert peak < 8 << 20  # bytes of Python objects at the peak (the expansion would take GBs)
    assert con.execute("SELECT count(*) FROM stage_runs").fetchone()[0] == 0


MERGE_BOMB = "m0: &m0 {a: 1}\n" + "".join(
    f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}]}}\n" for i in range(1, 10)
)  # merge keys: building the objects would copy 9**9 pairs


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        (MERGE_BOMB, "nodes with aliases expanded"),
        ("a: &a [1, *a]\n", "recursive aliases, got alias 'a'"),
        ("runs: [a, b\n", "expected YAML, got: while parsing a flow sequence"),
        ("x: " + "[" * (safe_yaml.MAX_YAML_DEPTH + 1) + "]" * (safe_yaml.MAX_YAML_DEPTH + 1), "levels deep"),
    ],
)
def test_yaml_over_a_limit_or_broken_is_quarantined(
    text: str, phrase: str, tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    path = tmp_path / "runs.yaml"
    path.write_text(text)
    report = read_one(path, con)
    assert report.status == "quarantined"
    assert phrase in report.rejections[0].reason, report.rejections[0].reason


def test_yaml_limits_on_size_and_aliases(
    tmp_path: Path, con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.yaml"
    path.write_text("d: &d {family: f}\nruns:\n" + "".join(f"- {{<<: *d, run_id: r{i}}}\n" for i in range(5)))
    assert read_one(path, con).n_run_rows == 5
    monkeypatch.setattr(safe_yaml, "MAX_YAML_ALIASES", 4)
    assert "at most 4 aliases, got more by line 7" in read_one(path, con).rejections[0].reason
    monkeypatch.setattr(safe_yaml, "MAX_YAML_BYTES", 64)
    reason = read_one(path, con).rejections[0].reason
    assert f"expected a YAML file of at most 64 bytes, got {path.stat().st_size} bytes" in reason


def test_yaml_with_legitimate_anchors_is_read(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    path = tmp_path / "runs.yaml"
    path.write_text(
        "defaults: &defaults {family: fam, schedule: cosine, tags: &tags [a, b]}\n"
        "runs:\n"
        "  - <<: *defaults\n    run_id: r1\n    n_params: 1.0e6\n"
        "  - <<: *defaults\n    run_id: r2\n    n_params: 2.0e6\n    schedule: wsd\n    more_tags: *tags\n"
    )
    report = read_one(path, con)
    assert (report.status, report.n_run_rows) == ("ok", 2)
    rows = con.execute("SELECT run_id, family, schedule, n_params, extra FROM stage_runs ORDER BY run_id").fetchall()
    assert [r[:4] for r in rows] == [("r1", "fam", "cosine", 1.0e6), ("r2", "fam", "wsd", 2.0e6)]
    assert json.loads(rows[1][4]) == {"tags": ["a", "b"], "more_tags": ["a", "b"]}


@pytest.mark.parametrize(("fmt", "name", "location"), [
    ("wandb", "config.yaml", "config.yaml"), ("mlflow", "meta.yaml", "meta.yaml"),
    ("tensorboard", "config.yaml", "file"),
])
def test_yaml_bombs_in_run_directories_are_quarantined(
    fmt: str, name: str, location: str, tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    runs, metrics = ladder()
    first = runs.run_id[0]
    write_logs(fmt, tmp_path, runs[runs.run_id == first], metrics[metrics.run_id == first])
    (unit,) = [u for u in discover(tmp_path) if u.reader == fmt]
    (unit.path / name).write_text(LAUGHS + "\n")
    (unit,) = [u for u in discover(tmp_path) if u.reader == fmt]
    create_staging(con)
    report = read_unit(unit, con)
    assert report.status == "quarantined" and report.rejections[0].location == location
    assert "nodes with aliases expanded" in report.rejections[0].reason


# ------------------------------------------------------------------------------------------------
# what quarantine reasons quote
# ------------------------------------------------------------------------------------------------

NASTY = "a\u202eb\x1b[31m\r\x07\u2066c\u200b" + "x" * 5000  # bidi, escape, CR, bell, zero-width; long
YAML_NASTY = "a\u202eb\u2066c\u200b" + "x" * 5000  # YAML refuses control characters itself


def test_excerpt_escapes_and_caps() -> None:
    text = excerpt(NASTY)
    assert text.isprintable() and len(text) == EXCERPT_CHARS and text.endswith("...")
    assert text.startswith("a\\u202eb\\x1b[31m\\r\\x07\\u2066c\\u200bxxx")
    assert excerpt("\x00" * 100).endswith("\\x00...")  # never cut inside an escape
    assert shorten("abc") == "'abc'" and shorten(NASTY).startswith("'a\\u202eb") and len(shorten(NASTY)) == 80
    assert excerpt("plain, short") == "plain, short"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("m.csv", f"step,{NASTY}\n1,2\n"),  # no loss column: the header is quoted
        ("m.csv", f"step,loss\n1,2.0\n2,{NASTY}\n"),  # bad number
        ("m.csv", f'step,loss\n1,2.0\n2,"{NASTY}\n'),  # broken quoting
        ("m.jsonl", f'{{"step": 1, "loss": 2}}\n{{"step": 2, "loss": "{NASTY}"}}\n'),
        ("m.jsonl", f'{{"step": 1, "loss": 2}}\n{NASTY}\n'),  # not JSON
        ("runs.csv", f"run_id,n_params\na,{NASTY}\n"),
        ("runs.yaml", f"- {{run_id: a, n_params: '{YAML_NASTY}'}}\n"),
    ],
)
def test_quarantine_reasons_quote_a_short_escaped_excerpt(
    name: str, content: str, tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    path = tmp_path / name
    path.write_text(content, newline="")
    report = read_one(path, con)
    (rejection,) = report.rejections
    assert rejection.reason.isprintable(), rejection.reason
    assert "x" * (EXCERPT_CHARS + 1) not in rejection.reason and len(rejection.reason) < 300, rejection.reason
    assert "\\u202e" in rejection.reason or "expected well-formed CSV" in rejection.reason


def test_mlflow_metric_line_excerpt(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    run = tmp_path / "mlruns" / "0" / "r1"
    (run / "metrics").mkdir(parents=True)
    (run / "meta.yaml").write_text("run_name: r1\n")
    (run / "metrics" / "train_loss").write_text(f"1 2.0 1\n2 {NASTY} 2\n")
    (rejection,) = read_one(run / "x", con).rejections
    assert rejection.reason.isprintable() and len(rejection.reason) < 200, rejection.reason


# ------------------------------------------------------------------------------------------------
# gzip, quoted newlines
# ------------------------------------------------------------------------------------------------


def test_gzip_logs_are_read_like_plain_ones(tmp_path: Path) -> None:
    runs, metrics = ladder()
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    paths = write_logs("csv", plain / "csv", runs, metrics) + write_logs("jsonl", plain / "jsonl", runs, metrics)
    for path in paths:
        target = packed / path.relative_to(plain)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.name == "runs.csv":
            target.write_bytes(path.read_bytes())
            continue
        with open(path, newline="") as source, gzip.open(f"{target}.gz", "wt", newline="") as out:
            if path.suffix == ".csv":  # rewritten row by row by the csv/json writers
                csv.writer(out, lineterminator="\n").writerows(csv.reader(source))
            else:
                out.writelines(json.dumps(json.loads(line)) + "\n" for line in source)
    tables = {}
    for root in (plain, packed):
        with duckdb.connect(str(tmp_path / f"{root.name}.duckdb")) as con:
            summary = ingest(root, con)
            assert summary.rejections == 0 and summary.units_seen == len(paths)
            tables[root.name] = sorted(map(repr, con.execute(
                "SELECT * EXCLUDE (source_path), regexp_replace(source_path, '[.]gz$', '') FROM raw.metrics"
            ).fetchall()))
            methods = summary.read_methods
    assert tables["packed"] == tables["plain"] and len(tables["plain"]) == 2 * len(metrics)
    assert methods == {"csv/exact": 3, "jsonl/exact": 3}  # the fast paths leave .gz to the exact path


def test_damaged_gzip_is_quarantined(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    path = tmp_path / "m.jsonl.gz"
    with gzip.open(path, "wt") as out:
        out.writelines(json.dumps({"step": i, "loss": 1.0 / (i + 1)}) + "\n" for i in range(1000))
    path.write_bytes(path.read_bytes()[:-50])
    report = read_one(path, con)
    assert report.status == "quarantined"
    assert "expected gzip-compressed data" in report.rejections[0].reason, report.rejections[0].reason
    path.write_bytes(b"not gzip at all\n")
    assert "expected gzip-compressed data" in read_one(path, con).rejections[0].reason


def test_csv_with_quoted_newlines_matches_pandas(tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "run_id": ["r1", "r1", "r1", "run\ntwo", "run\ntwo"],
        "step": [1, 2, 3, 1, 2],
        "loss": [3.0, 2.5, 2.25, 3.5, 3.0],
        "note": ["start", 'line one\nline "two", with comma', "", "x\n\ny", "end\r\nwindows"],
    })
    root = tmp_path / "logs"
    (root / "pandas").mkdir(parents=True)
    (root / "module").mkdir()
    frame.to_csv(root / "pandas" / "m.csv", index=False)
    with open(root / "module" / "m.csv", "w", newline="") as handle:  # csv module, CRLF line ends
        csv.writer(handle).writerows([list(frame.columns), *frame.itertuples(index=False)])
    for path in (root / "pandas" / "m.csv", root / "module" / "m.csv"):
        want = pd.read_csv(path)
        with duckdb.connect(str(tmp_path / f"{path.parent.name}.duckdb")) as con:
            report = read_one(path, con)
            assert (report.status, report.method) == ("ok", "exact")
            got = con.execute("SELECT run_id, step, train_loss, record FROM stage_metrics ORDER BY record").fetchall()
        lines = record_lines(path.read_bytes().decode())[1:]
        assert got == list(zip(want.run_id, want.step, want.loss, lines, strict=True))
        assert lines == [2, 3, 5, 6, 10]
    with duckdb.connect(str(tmp_path / "ingest.duckdb")) as con:  # ingest's fast path hands them over
        summary = ingest(root, con)
        assert summary.read_methods == {"csv/exact": 2} and summary.metric_rows == 2 * len(frame)


def record_lines(text: str) -> list[int]:
    """Line numbers where CSV records start: after a newline outside quotes (independent of the reader)."""
    lines, quoted = [1], False
    for i, char in enumerate(text[:-1]):
        quoted ^= char == '"'
        if char == "\n" and not quoted:
            lines.append(text.count("\n", 0, i + 1) + 1)
    return lines


@pytest.mark.parametrize(
    ("content", "location", "phrase", "kept"),
    [
        ('step,loss\n1,2.0\n2,"1.0\n3,1.5\n4,1.2\n', "line 3", "unexpected end of data", [1, 3, 4]),
        ('step,loss\n1,"2\n2",1.5,9\n3,1.2\n', "line 2", "got 4 in a record over lines 2-3", [3]),
    ],
)
def test_a_broken_quoted_record_costs_only_its_first_line(
    content: str, location: str, phrase: str, kept: list[int], tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    path = tmp_path / "m.csv"
    path.write_text(content)
    report = read_one(path, con)
    assert report.rejections[0].location == location and phrase in report.rejections[0].reason
    assert [s for (s,) in con.execute("SELECT step FROM stage_metrics ORDER BY step").fetchall()] == kept


# ------------------------------------------------------------------------------------------------
# TensorBoard event files, over-long JSON lines
# ------------------------------------------------------------------------------------------------


def test_tensorboard_garbled_header_is_a_corrupt_event_file(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    runs, metrics = ladder()
    first = runs.run_id[0]
    write_logs("tensorboard", tmp_path, runs[runs.run_id == first], metrics[metrics.run_id == first])
    (unit,) = discover(tmp_path)
    events = next(m for m in unit.members if m.parent == unit.path)  # hparams are in a sub-directory
    events.write_bytes(b"\xde\xad\xbe\xef" * 3 + events.read_bytes()[12:])
    create_staging(con)
    report = read_unit(unit, con)
    assert report.status == "quarantined"
    (rejection,) = report.rejections
    assert rejection.location == f"{events.name} byte 0"
    assert "corrupt event file" in rejection.reason and "at record 1 of the file" in rejection.reason
    assert "expected a loss" not in rejection.reason


def test_tensorboard_corrupt_record_keeps_the_records_before(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    run_dir = tmp_path / "run"
    write_tb(run_dir, {"train/loss": [(s, 1.0 / s) for s in range(1, 11)]})
    (events,) = run_dir.glob("events.out.tfevents.*")
    data = bytearray(events.read_bytes())
    data[-20] ^= 0xFF  # inside the data of the last record
    events.write_bytes(bytes(data))
    report = read_one(run_dir / "x", con)
    assert (report.status, report.n_metric_rows) == ("partial", 9)
    (rejection,) = report.rejections
    assert "corrupt record (its data fails its checksum) at record 11 of the file" in rejection.reason


def test_over_long_json_line_is_named_as_such(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    path = tmp_path / "m.jsonl"
    huge = json.dumps({"step": 1, "loss": 2.0, "blob": "x" * (3 << 19)})  # 1.5 MiB
    path.write_text(huge + "\n")
    report = read_one(path, con)
    assert report.status == "quarantined"
    assert report.rejections[0].reason == (
        "file: expected JSON lines (one JSON object per line), got 1 line and none is a JSON object "
        "(line 1: expected a line of at most 1.0 MiB, got 1.5 MiB)")
    path.write_text('{"step": 1, "loss": 2.0}\n' + huge + "\n" + '{"step": 3, "loss": 1.0}\n')
    report = read_one(path, con)
    assert (report.status, report.n_metric_rows) == ("partial", 2)
    assert report.rejections[0].reason == "line 2: expected a line of at most 1.0 MiB, got 1.5 MiB"
    path.write_text('{"step": 1, "loss": ' + "9" * 200 + "\n")
    reason = read_one(path, con).rejections[0].reason
    assert "(line 1: expected a JSON object, got malformed JSON '{\"step\": 1" in reason
