"""Fast path of the csv/jsonl readers (DuckDB's native reader, validated) against the exact
line-by-line path: clean files take the fast path and stage exactly the rows the exact path
stages; damaged files take the exact path (precise row rejections)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaling_pipeline.lib.formats import SourceUnit, common, create_staging, native, read_unit, write_logs
from scaling_pipeline.lib.ingest import ingest
from tests.test_formats import ladder


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    yield connection
    connection.close()


def staged(con: duckdb.DuckDBPyConnection, path: Path, *, fast: bool) -> tuple:
    """(method, status, rejections, staged rows in table order) of one metric file."""
    reader = path.suffix.lstrip(".")
    common.FAST_PATH = fast
    try:
        create_staging(con)
        report = read_unit(SourceUnit(path, reader, (path,)), con)
    finally:
        common.FAST_PATH = True
    rows = con.execute("SELECT * FROM stage_metrics").fetchall()
    return report.method, report.status, [r.reason for r in report.rejections], repr(rows)


def both(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[tuple, tuple]:
    return staged(con, path, fast=True), staged(con, path, fast=False)


CLEAN_CSV = (
    "global_step,run,family,loss,val_loss,tokens,lr,elapsed,junk,train_loss\n"
    "1,r1,f,2.5,,1024,0.001,0.5,x,\n"
    "2,r1,,nan,3.25, 2048 ,1e-3,1.0,,\n"
    "3,r1,f,inf,,3072,,1.5,y,7\n"
    "62.0,r1,f,-Infinity,1e400,4096,0.0005,2.0,z,\n"
    "1e3,r1,  ,,2.0,5120,0.0004,2.5,,1.5\n"
    "5,r1,f,1_000,,6144,0.0003,3.0,,\n"
)
CLEAN_JSONL = "".join(
    line + "\n"
    for line in (
        '{"step": 1, "run_id": "r1", "loss": 2.5, "eval_loss": null, "extra": [1, 2]}',
        '{"step": 2, "run_id": "r1", "loss": NaN, "eval_loss": 3.25, "lr": 1e-3}',
        '{"step": 3.0, "run_id": "r1", "loss": Infinity, "tokens": "4096", "family": "f"}',
        '{"step": 4, "run_id": "r1", "loss": -Infinity, "family": "  ", "elapsed": 1.5}',
        '{"_step": 5, "run_id": "r1", "loss": 1.5, "nested": {"a": {"b": 1}}}',
        '{"step": 9007199254740993, "run_id": "r1", "loss": 1.25}',
    )
)


@pytest.mark.parametrize("suffix, text", [(".csv", CLEAN_CSV), (".jsonl", CLEAN_JSONL)])
def test_clean_file_takes_the_fast_path_with_identical_rows(
    tmp_path: Path, con: duckdb.DuckDBPyConnection, suffix: str, text: str
) -> None:
    path = tmp_path / f"run{suffix}"
    path.write_text(text, encoding="utf-8")
    fast, exact = both(con, path)
    assert fast[0] == "fast" and exact[0] == "exact"
    assert fast[1] == "ok" and fast[1:] == exact[1:]


def test_writer_output_takes_the_fast_path(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    runs, metrics = ladder()
    for fmt in ("csv", "jsonl"):
        paths = [
            p for p in write_logs(fmt, tmp_path / fmt, runs, metrics) if p.suffix == f".{fmt}"
        ]
        methods = []
        for path in paths:
            fast, exact = both(con, path)
            assert fast[1:] == exact[1:], path
            methods.append(fast[0])
        # csv: run ids with quotes are written quoted -> those files are read line by line
        assert methods.count("fast") >= (1 if fmt == "csv" else len(paths)), (fmt, methods)


HEADER = "step,run_id,train_loss,eval_loss\n"
DAMAGED_CSV = {
    "truncated": HEADER + "1,r,2.5,\n2,r,2.",
    "bad number": HEADER + "1,r,2.5,\n2,r,abc,\n",
    "bad step": HEADER + "1,r,2.5,\n2.5,r,2.0,\n",
    "blank step": HEADER + "1,r,2.5,\n,r,2.0,\n",
    "blank run id": HEADER + "1,r,2.5,\n2, ,2.0,\n",
    "blank line": HEADER + "1,r,2.5,\n\n2,r,2.0,\n",
    "whitespace line": HEADER + "1,r,2.5,\n   \n2,r,2.0,\n",
    "too few fields": HEADER + "1,r,2.5\n2,r,2.0,\n",
    "too many fields": HEADER + "1,r,2.5,,9\n2,r,2.0,\n",
    "nul byte": HEADER + "1,r,2.5,\n2,r\x00,2.0,\n",
    "crlf": HEADER.replace("\n", "\r\n") + "1,r,2.5,\r\n2,r,2.0,\r\n",
    "quoted": HEADER + '1,"r",2.5,\n2,r,2.0,\n',
    "blank before header": "\n" + HEADER + "1,r,2.5,\n",
}
DAMAGED_JSONL = {
    "truncated": '{"step": 1, "loss": 2.5}\n{"step": 2, "lo',
    "not an object": '{"step": 1, "loss": 2.5}\n[1, 2]\n',
    "malformed": '{"step": 1, "loss": 2.5}\n{"step": 2, loss: 1}\n',
    "bad number": '{"step": 1, "loss": 2.5}\n{"step": 2, "loss": "abc"}\n',
    "bad step": '{"step": 1, "loss": 2.5}\n{"step": 2.5, "loss": 1.0}\n',
    "null step": '{"step": 1, "loss": 2.5}\n{"step": null, "loss": 1.0}\n',
    "blank line": '{"step": 1, "loss": 2.5}\n\n{"step": 2, "loss": 1.0}\n',
    "two objects on a line": '{"step": 1, "loss": 2.5} {"step": 2, "loss": 1.0}\n',
    "nul byte": '{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 1.0, "x": "\x00"}\n',
    "invalid utf-8": None,
}


@pytest.mark.parametrize(
    "suffix, kind",
    [(".csv", k) for k in DAMAGED_CSV] + [(".jsonl", k) for k in DAMAGED_JSONL],
)
def test_damaged_file_takes_the_exact_path(
    tmp_path: Path, con: duckdb.DuckDBPyConnection, suffix: str, kind: str
) -> None:
    path = tmp_path / f"run{suffix}"
    text = (DAMAGED_CSV if suffix == ".csv" else DAMAGED_JSONL)[kind]
    if text is None:
        path.write_bytes(b'{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 1.0, "x": "\xff"}\n')
    else:
        path.write_bytes(text.encode("utf-8"))
    fast, exact = both(con, path)
    assert fast == exact  # the fast attempt left nothing behind
    assert fast[0] == "exact" or fast[1] == "quarantined"  # quarantined: no method
    fine = ("crlf", "quoted", "blank before header", "blank line", "whitespace line")
    if kind not in fine:  # those are valid, just not plain enough for the fast path
        assert fast[1] != "ok", fast


def test_large_file_keeps_line_numbers(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    """Several DuckDB read chunks / row groups: record must stay the line number."""
    n = 300_000
    csv_path, jsonl_path = tmp_path / "big.csv", tmp_path / "big.jsonl"
    with open(csv_path, "w") as c, open(jsonl_path, "w") as j:
        c.write("step,train_loss\n")
        for step in range(1, n + 1):
            c.write(f"{step},{1.0 + 1.0 / step!r}\n")
            j.write(json.dumps({"step": step, "train_loss": 1.0 + 1.0 / step}) + "\n")
    for path, offset in ((csv_path, 1), (jsonl_path, 0)):
        create_staging(con)
        report = read_unit(SourceUnit(path, path.suffix.lstrip("."), (path,)), con)
        assert (report.method, report.n_metric_rows, report.status) == ("fast", n, "ok")
        bad = con.execute(
            "SELECT count(*) FROM stage_metrics WHERE record <> step + ?", [offset]
        ).fetchone()[0]
        assert bad == 0


def test_ingest_gives_the_same_warehouse_either_way(tmp_path: Path) -> None:
    runs, metrics = ladder()
    for fmt in ("csv", "jsonl"):
        write_logs(fmt, tmp_path / "logs" / fmt, runs, metrics)
    (tmp_path / "logs" / "csv" / "plain.csv").write_text(CLEAN_CSV)
    (tmp_path / "logs" / "jsonl" / "plain.jsonl").write_text(CLEAN_JSONL)
    out = {}
    for fast in (True, False):
        common.FAST_PATH = fast
        before = common.READ_METHODS.copy()
        try:
            with duckdb.connect(str(tmp_path / f"w{fast}.duckdb")) as con:
                ingest(tmp_path / "logs", con)
                out[fast] = [
                    sorted(map(repr, con.execute(f"SELECT * FROM {t}").fetchall()))
                    for t in ("raw.metrics", "raw.runs")
                ]
        finally:
            common.FAST_PATH = True
        used = common.READ_METHODS - before
        assert (used["csv/fast"] > 0) == fast and (used["jsonl/fast"] > 0) == fast
    assert out[True] == out[False]


CSV_CELLS = st.sampled_from(
    ["1", "2", "62.0", "62.5", " 3 ", "nan", "inf", "-Infinity", "", "  ", "0x10", "1_000",
     "1e400", "9223372036854775808", "abc", "\t7", ".5", "1e3", "-0", "+5", "1d", "r;x", "ü"]
)  # fmt: skip
JSON_VALUES = st.sampled_from(
    ["1", "2", "62.0", "62.5", '" 3 "', "NaN", "Infinity", "-Infinity", "null", '""', '"  "',
     '"abc"', "true", "[1]", '{"a": 1}', "1e400", "9223372036854775807", "9223372036854775808",
     '"1e3"', "-0", '"ü"', "0.1", '"a:b"', "false"]
)  # fmt: skip
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                HealthCheck.function_scoped_fixture])  # fmt: skip


@FUZZ
@given(rows=st.lists(st.tuples(CSV_CELLS, CSV_CELLS, CSV_CELLS, CSV_CELLS), min_size=1, max_size=6))
def test_fuzz_csv_fast_equals_exact(tmp_path_factory, rows) -> None:
    path = tmp_path_factory.mktemp("f") / "r.csv"
    path.write_text(
        "step,run_id,train_loss,family\n" + "".join(",".join(r) + "\n" for r in rows),
        encoding="utf-8",
    )
    with duckdb.connect() as con:
        fast, exact = both(con, path)
    assert fast[1:] == exact[1:]


@FUZZ
@given(rows=st.lists(st.tuples(JSON_VALUES, JSON_VALUES, JSON_VALUES), min_size=1, max_size=6))
def test_fuzz_jsonl_fast_equals_exact(tmp_path_factory, rows) -> None:
    path = tmp_path_factory.mktemp("f") / "r.jsonl"
    path.write_text(
        "".join(f'{{"step": {a}, "loss": {b}, "run": {c}}}\n' for a, b, c in rows),
        encoding="utf-8",
    )
    with duckdb.connect() as con:
        fast, exact = both(con, path)
    assert fast[1:] == exact[1:]


@FUZZ
@given(
    rows=st.lists(st.tuples(*[st.one_of(JSON_VALUES, st.none())] * 4), min_size=1, max_size=6),
    keys=st.sampled_from([("step", "loss", "run", "lr"), ("run", "lr", "loss", "step"), ("step", "loss", "Loss", "lr")]),
)
def test_fuzz_batched_jsonl_fast_equals_exact(tmp_path_factory, rows, keys) -> None:
    """A batch reads each line with line 1's keys (in any order, no true/false) once, into typed
    values, and other lines as the exact path does: the warehouse equals the all-exact one. None
    leaves the key out of the line."""
    root = tmp_path_factory.mktemp("f")
    (root / "logs").mkdir()
    lines = ["{" + ", ".join(f'"{k}": {v}' for k, v in zip(keys, row, strict=True) if v is not None) + "}" for row in rows]
    (root / "logs" / "r.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (root / "logs" / "s.jsonl").write_text("{" + ", ".join(f'"{k}": {n}' for n, k in enumerate(keys, 1)) + "}\n")
    fast, _, _ = _warehouse(root / "logs", root / "fast.duckdb", fast=True)
    exact, _, _ = _warehouse(root / "logs", root / "exact.duckdb", fast=False)
    assert fast == exact


def test_batched_jsonl_odd_keys_equal_exact(tmp_path: Path) -> None:
    """Every key of line 1 enters the typed parse's struct: keys with quotes, spaces, NUL, ':' or a
    case clash with a metric give the warehouse of the all-exact ingest (some files go the exact way)."""
    root = tmp_path / "logs"
    root.mkdir()
    odd = ["", 'a"b', "x\u0000", "my key", "é", "a'b", "STEP", "a:b", "{", "\\"]
    for i, key in enumerate(odd):
        rows = [{"step": 1, "loss": 2.5, key: 3}, {"step": 2, "loss": 2.0, key: [1]}, {"loss": 1.5, "step": 3, key: None}]
        (root / f"f{i}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    fast, summary, _ = _warehouse(root, tmp_path / "fast.duckdb", fast=True)
    exact, _, _ = _warehouse(root, tmp_path / "exact.duckdb", fast=False)
    assert fast == exact
    assert summary.read_methods == {"jsonl/fast": 8, "jsonl/exact": 2}
    assert len(fast[0]) == 3 * len(odd) - 1  # STEP (an alias of step) rejects its row of [1]


def test_ingest_summary_counts_read_methods(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.csv").write_text(CLEAN_CSV)
    (tmp_path / "logs" / "b.csv").write_text(DAMAGED_CSV["bad number"])
    (tmp_path / "logs" / "c.jsonl").write_text(CLEAN_JSONL)
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        summary = ingest(tmp_path / "logs", con)
    assert summary.read_methods == {"csv/fast": 1, "csv/exact": 1, "jsonl/fast": 1}
    assert summary.units_partial == 1


def _warehouse(root: Path, db: Path, *, fast: bool, batch_bytes: int | None = None) -> tuple:
    """(raw.metrics, raw.runs, raw.quarantine without timestamps, raw.files without timestamps,
    methods used) of a fresh ingest of ``root``."""
    common.FAST_PATH = fast
    before = common.READ_METHODS.copy()
    try:
        with duckdb.connect(str(db)) as con:
            summary = ingest(root, con, **({"batch_bytes": batch_bytes} if batch_bytes else {}))
            tables = tuple(
                sorted(map(repr, con.execute(sql).fetchall()))
                for sql in (
                    "SELECT * FROM raw.metrics",
                    "SELECT * FROM raw.runs",
                    "SELECT * EXCLUDE (quarantined_at) FROM raw.quarantine",
                    "SELECT * EXCLUDE (ingested_at) FROM raw.files",
                )
            )
    finally:
        common.FAST_PATH = True
    return tables, summary, common.READ_METHODS - before


@pytest.mark.parametrize("one_pass_min_rows", [native.ONE_PASS_MIN_ROWS, 1], ids=["held apart", "one pass first"])
def test_batched_native_read_isolates_damaged_files(tmp_path: Path, monkeypatch, one_pass_min_rows: int) -> None:
    """Many files per native statement: a damaged file (which fails read_csv/read_json for the whole
    list) is isolated by bisection and read alone line by line; the warehouse equals the one of an
    all-exact ingest, and the clean files are all read natively. With small files allowed one pass,
    batches are first stored in one pass, which a damaged file rolls back."""
    monkeypatch.setattr(native, "ONE_PASS_MIN_ROWS", one_pass_min_rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "logs"
    runs, metrics = ladder()
    for fmt in ("csv", "jsonl", "parquet"):
        write_logs(fmt, root / fmt, runs, metrics)
    for i in range(6):
        (root / "csv" / f"plain{i}.csv").write_text(CLEAN_CSV)
        (root / "jsonl" / f"plain{i}.jsonl").write_text(CLEAN_JSONL)
    # files over 1 MiB go through read_csv / read_json, smaller ones are split in SQL: both in one batch
    header = CLEAN_CSV.splitlines()[0]
    (root / "csv" / "plain_big.csv").write_text(header + "\n" + "".join(
        f"{i},r1,f,{2 + 1 / i!r},,{1024 * i},0.001,{0.5 * i},x,\n" for i in range(1, 30_001)))
    (root / "jsonl" / "plain_big.jsonl").write_text("".join(
        json.dumps({"step": i, "run_id": "r1", "loss": 2 + 1 / i, "pad": "x" * 20}) + "\n" for i in range(1, 20_001)))
    assert min((root / fmt / f"plain_big.{fmt}").stat().st_size for fmt in ("csv", "jsonl")) > 1 << 20
    (root / "csv" / "plain2b.csv").write_text(DAMAGED_CSV["bad number"])  # read_csv fails on the list
    (root / "csv" / "plain3b.csv").write_text(DAMAGED_CSV["blank run id"])  # reads, fails validation
    (root / "csv" / "plain4b.csv").write_text(DAMAGED_CSV["too many fields"])
    (root / "jsonl" / "plain2b.jsonl").write_text(DAMAGED_JSONL["malformed"])
    (root / "jsonl" / "plain3b.jsonl").write_text(DAMAGED_JSONL["bad step"])
    (root / "jsonl" / "other_keys.jsonl").write_text('{"iter": 1, "val_loss": 3.5}\n{"iter": 2, "val_loss": 3.0}\n')
    # jsonl batches are grouped by line 1's keys; later lines may reorder or repeat them, and a later
    # line with a key line 1 lacks ("Loss": an alias too) sends the file to a read of its own
    (root / "jsonl" / "reordered.jsonl").write_text('{"step": 1, "loss": 2.5}\n{"loss": 2.0, "step": 2}\n')
    (root / "jsonl" / "repeated.jsonl").write_text('{"step": 1, "loss": 2.5, "loss": 9}\n{"step": 2, "loss": 2.0}\n')
    (root / "jsonl" / "late_alias.jsonl").write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "Loss": 1.5}\n')
    # ... as does one with line 1's keys and one more (the typed parse would ignore it); a ':' in a
    # value sends its line to the exact path's functions
    (root / "jsonl" / "late_extra.jsonl").write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 1.5, "lr": 0.1}\n')
    (root / "jsonl" / "colon.jsonl").write_text('{"step": 1, "loss": 2.5, "note": "a:b"}\n{"step": 2, "loss": 2, "note": 1}\n')
    pq.write_table(pa.table({"step": ["1", "x"], "loss": [2.5, 2.0]}), root / "parquet" / "bad_step.parquet")
    pq.write_table(pa.table({"global_step": [1, 2], "eval_loss": [2.5, None]}), root / "parquet" / "other.parquet")
    (root / "parquet" / "corrupt.parquet").write_bytes(b"PAR1 not really")
    # names DuckDB's readers would expand as globs: each must be read as itself
    (root / "csv" / "glob[1].csv").write_text(HEADER + "1,glob,9.5,\n")
    (root / "csv" / "glob1.csv").write_text(HEADER + "1,other,1.5,\n")
    pq.write_table(pa.table({"step": [7], "loss": [9.5]}), root / "parquet" / "g[1].parquet")
    pq.write_table(pa.table({"step": [8], "loss": [1.5]}), root / "parquet" / "g1.parquet")

    fast, summary, used = _warehouse(root, tmp_path / "fast.duckdb", fast=True)
    exact, _, _ = _warehouse(root, tmp_path / "exact.duckdb", fast=False)
    assert fast == exact
    small, _, _ = _warehouse(root, tmp_path / "small.duckdb", fast=True, batch_bytes=1)  # one file per batch
    assert small == exact
    # natively: the ladder's run files (but the csv one with a quoted run id), the 6 plain files, the
    # file with other keys/columns, glob1.csv / g1.parquet; the rest alone (exact path or quarantine)
    n_fast = {k: v for k, v in summary.read_methods.items() if k.endswith("/fast")}
    assert n_fast == {"csv/fast": 2 + 6 + 2, "jsonl/fast": 3 + 6 + 2 + 5, "parquet/fast": 3 + 2}, n_fast
    assert summary.read_methods["csv/exact"] == 5 and summary.read_methods["jsonl/exact"] == 2
    assert used["parquet/fast"] == 5
    with duckdb.connect(str(tmp_path / "fast.duckdb")) as con:
        rows = dict(con.execute(
            "SELECT source_path, list(train_loss) FROM raw.metrics WHERE source_path LIKE '%g%1%' GROUP BY 1"
        ).fetchall())
    assert rows["csv/glob[1].csv"] == [9.5] and rows["csv/glob1.csv"] == [1.5]
    assert rows["parquet/g[1].parquet"] == [9.5] and rows["parquet/g1.parquet"] == [1.5]
    with duckdb.connect(str(tmp_path / "fast.duckdb")) as con:
        late = con.execute("SELECT list(train_loss ORDER BY step) FROM raw.metrics WHERE source_path = ?",
                           ["jsonl/late_alias.jsonl"]).fetchone()[0]
        extra = con.execute("SELECT list(lr ORDER BY step) FROM raw.metrics WHERE source_path = ?",
                            ["jsonl/late_extra.jsonl"]).fetchone()[0]
    assert late == [2.5, 1.5] and extra == [None, 0.1]


def test_byte_scan_keeps_line_one_within_a_chunk(tmp_path: Path) -> None:
    """The scan that shares the sha256's read hands line 1 to the fast-path checks; a line 1 longer
    than one read chunk is not guessed at."""
    from scaling_pipeline.lib.formats.text import scan_bytes

    path = tmp_path / "a.csv"
    path.write_bytes(b"\xef\xbb\xbfstep,loss\r\n1,2\n")
    scan = scan_bytes(path, chunk=8)  # line 1 (with BOM and CR) spans two chunks
    assert (scan.size, scan.newlines, scan.has_cr, scan.head) == (18, 2, True, None)
    assert scan.first_line() is None
    scan = scan_bytes(path)
    assert scan.first_line() == "step,loss" and scan.lines == 2
    path.write_bytes(b'{"step": 1, "loss": 2.5}')  # one line, no newline
    scan = scan_bytes(path)
    assert (scan.first_line(), scan.lines, scan.ends_with_newline) == ('{"step": 1, "loss": 2.5}', 1, False)
    path.write_bytes(b"step,loss\xff\n1,2\n")  # line 1 is not UTF-8
    assert scan_bytes(path).first_line() is None


@pytest.mark.parametrize("damaged", [False, True], ids=["one pass", "held apart"])
def test_batched_read_in_the_warehouse_leaves_it_as_it_was(tmp_path: Path, damaged: bool, monkeypatch) -> None:
    """Small csv/jsonl files are read in the warehouse's own DuckDB instance, in one pass or (when a
    file of the batch is damaged) again with their rows held apart: afterwards the attached scratch
    database is gone and preserve_insertion_order (an instance-wide setting the read turns off) is
    back."""
    root = tmp_path / "logs"
    root.mkdir()
    for i in range(3):
        (root / f"r{i}.jsonl").write_text("".join(f'{{"step": {n}, "loss": {1 + 1 / n}}}\n' for n in range(1, 6)))
        (root / f"r{i}.csv").write_text(CLEAN_CSV)
    monkeypatch.setattr(native, "ONE_PASS_MIN_ROWS", 1)  # small files too
    if damaged:
        (root / "r3.jsonl").write_text('{"step": 1, "loss": 2.5}\n{"step": "x", "loss": 2.0}\n')
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        summary = ingest(root, con)
        assert summary.read_methods == {"csv/fast": 3, "jsonl/fast": 3, **({"jsonl/exact": 1} if damaged else {})}
        assert con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0] is True
        attached = {name for (name,) in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
        assert not attached & {"_native_read"}
        assert con.execute("SELECT count(*) FROM raw.metrics").fetchone()[0] == 3 * (5 + 6) + damaged  # jsonl 5, csv 6


def test_one_pass_insert_holds_each_file_to_its_own_promise(tmp_path: Path) -> None:
    """A batch is stored in one pass only if every file gave exactly the rows its bytes promised, all
    clean: a file that grew after it was scanned (a row more than promised) cannot make up for a
    file with a bad row, although the batch's total would match."""
    from dataclasses import replace

    from scaling_pipeline.lib.formats import insert_native, native_file
    from scaling_pipeline.lib.formats.text import scan_bytes
    from scaling_pipeline.lib.ingest import RAW_METRICS, ensure_raw_schema

    grown, bad = tmp_path / "grown.jsonl", tmp_path / "bad.jsonl"
    grown.write_text("".join(f'{{"step": {n}, "loss": 2.5}}\n' for n in range(1, 4)))
    bad.write_text('{"step": 1, "loss": 2.5}\n{"step": "x", "loss": 2.0}\n{"step": 3, "loss": 1.5}\n')
    files = {p.stem: native_file(SourceUnit(p, "jsonl", (p,)), scan_bytes(p), p.name) for p in (grown, bad)}
    assert all(f is not None and f.rows == 3 for f in files.values())
    with duckdb.connect() as con:
        ensure_raw_schema(con)
        con.begin()
        assert insert_native([replace(files["grown"], rows=2), files["bad"]], con, RAW_METRICS) is None
        con.rollback()
        assert insert_native([files["grown"]], con, RAW_METRICS) == 3
        assert con.execute(f"SELECT list(step ORDER BY record), list(DISTINCT run_id), list(DISTINCT source_path) "
                           f"FROM {RAW_METRICS}").fetchone() == ([1, 2, 3], ["grown"], ["grown.jsonl"])


def test_one_pass_is_tried_only_for_numbered_rows(tmp_path: Path) -> None:
    """Files of 1 MiB or more (csv, jsonl) are read by DuckDB's readers, whose rows are numbered by
    their order: a batch of them is held apart from the start, never begun in one pass and rolled
    back; small files (split in SQL, numbered lines) and Parquet files (row numbers) may go in one pass."""
    from scaling_pipeline.lib.formats import jsonl_log, native_file
    from scaling_pipeline.lib.formats.native import one_pass_pays
    from scaling_pipeline.lib.formats.text import scan_bytes

    line = json.dumps({"step": 1, "loss": 2.5, "pad": "x" * 200}) + "\n"
    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    big.write_text(line * ((1 << 20) // len(line) + 1))
    small.write_text(line * native.ONE_PASS_MIN_ROWS)
    files = {p.stem: native_file(SourceUnit(p, "jsonl", (p,)), scan_bytes(p), p.name) for p in (big, small)}
    assert not files["big"].numbered and files["small"].numbered
    assert not one_pass_pays([files["big"]]) and not one_pass_pays([files["big"], files["small"]])
    assert one_pass_pays([files["small"]])
    with duckdb.connect() as con:
        groups, _ = jsonl_log.native_groups(con, list(files.values()))
    assert sorted(g.ordered for g in groups) == [False, True]  # read_ndjson_objects: by order
