"""Run metadata from every source: implausible values are quarantined field by field, contradicting
sources are reported (never silently resolved), and one family's bad data blocks no other family."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaling_pipeline.lib import cleaning as C
from scaling_pipeline.lib.ingest import ingest
from scaling_pipeline.lib.schema import RUN_RANGES
from scaling_pipeline.lib.simulate import SimConfig, write_demo
from tests.conftest import materialize_all

SMALL = SimConfig(n_sizes=5, n_budgets=4, isoflop_points=3, log_points=30, inject_faults=False)
BAD_VALUES = [  # (run id suffix, manifest column, cell text)
    ("n-1e308", "n_params", "1e308"), ("n-inf", "n_params", "inf"), ("n-nan", "n_params", "nan"),
    ("n-zero", "n_params", "0"), ("n-neg", "n_params", "-5"), ("n-tiny", "n_params", "1e-300"),
    ("n-50", "n_params", "50"), ("tokens-1e308", "tokens", "1e308"),
]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _copy_run(logs: Path, run: dict[str, str], new_id: str, dest: Path, edit=None) -> None:
    """``dest/<new_id>.csv``: the metric rows of ``run`` under ``new_id`` (``edit`` may change them)."""
    rows = [dict(r, run_id=new_id) for r in _read_csv(logs / f"{run['run_id']}.csv")]
    _write_csv(dest / f"{new_id}.csv", edit(rows) if edit else rows)


@pytest.fixture(scope="module")
def bad_ladder(tmp_path_factory) -> tuple[Path, object]:
    """Two csv families; family 'atlas' also has copies of one run with a bad manifest value each
    (bad/runs.csv lines 2-9), one whose logged tokens end at 1e308 and one whose final loss is negative."""
    root = tmp_path_factory.mktemp("bad") / "logs"
    write_demo(root, seed=0, fmt="csv", n_families=2, config=SMALL)
    logs = root / "csv"
    source = next(r for r in _read_csv(logs / "runs.csv") if r["family"] == "atlas")
    manifest = []
    def nudged(rows):  # another run at the same (N, D), not a copy of the series (see duplicate_series)
        return [dict(r, eval_loss=repr(float(r["eval_loss"]) * (1 + 1e-6)) if r["eval_loss"] else "") for r in rows]

    for suffix, column, text in BAD_VALUES:
        run_id = f"bad-{suffix}"
        _copy_run(logs, source, run_id, root / "bad", nudged)
        row = {k: source[k] for k in ("family", "n_params", "total_steps", "batch_tokens", "warmup_steps", "status")}
        manifest.append({"run_id": run_id, **row, "tokens": source["tokens_planned"], column: text})
    _write_csv(root / "bad" / "runs.csv", manifest)

    def last_tokens_huge(rows):
        rows[-1]["tokens"] = "1e308"
        return rows

    def last_eval_negative(rows):
        rows[-1]["eval_loss"] = "-1.0"
        return rows

    with open(logs / "runs.csv", "a", newline="") as handle:
        writer = csv.DictWriter(handle, list(source), lineterminator="\n")
        for run_id, edit in (("metric-tokens-1e308", last_tokens_huge), ("metric-loss-negative", last_eval_negative)):
            _copy_run(logs, source, run_id, logs, edit)
            writer.writerow(dict(source, run_id=run_id))
    work = root.parent
    # 'all': the copies share the source run's (N, D) and must not be reduced to the best of them
    result = materialize_all(root, work / "w.duckdb", work / "reports", bootstrap=10, hparam_selection="all")
    return work / "w.duckdb", result


def test_bad_metadata_is_quarantined_by_field_and_the_graph_completes(bad_ladder):
    db, result = bad_ladder
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    from scaling_pipeline.definitions import CHECKS

    assert len(checks) == len(CHECKS) == 8 and all(checks.values()), checks
    with duckdb.connect(str(db), read_only=True) as con:
        quarantine = con.execute("""SELECT location, field, scope, reason FROM raw.quarantine
                                    WHERE source_path = 'bad/runs.csv' ORDER BY location""").fetchall()
        excluded = dict(con.execute("SELECT run_id, reason || ': ' || detail FROM clean.exclusions "
                                    "WHERE kind = 'run'").fetchall())
        points = {r[0] for r in con.execute("SELECT run_id FROM clean.points").fetchall()}
        fits = dict(con.execute("SELECT family, status FROM fits.chinchilla").fetchall())
        plans = dict(con.execute("SELECT family, count(*) FROM plans.allocations GROUP BY family").fetchall())
    want = [(f"line {i}", column, "field", text) for i, (_, column, text) in enumerate(BAD_VALUES, 2)]
    assert [(loc, fld, scope) for loc, fld, scope, _ in quarantine] == [w[:3] for w in want]
    for (loc, fld, _, reason), (_, _, _, text) in zip(quarantine, want, strict=True):
        assert reason.startswith(f"{loc}: field '{fld}': expected a ")
        assert repr(float(text)) in reason, reason
    for suffix, column, text in BAD_VALUES:
        run_id = f"bad-{suffix}"
        if column == "n_params":  # the missing fact is named, with the rejected value and where it was
            assert excluded[run_id].startswith(C.NO_METADATA), excluded[run_id]
            assert "rejected at ingest" in excluded[run_id] and "bad/runs.csv line" in excluded[run_id]
        else:  # the rest of the row is still usable: tokens seen come from the log
            assert run_id in points
    assert excluded["metric-tokens-1e308"].startswith(f"{C.IMPLAUSIBLE_POINT}: tokens seen")
    assert excluded["metric-loss-negative"].startswith(f"{C.IMPLAUSIBLE_LOSS_SCALE}: final loss")
    assert fits == {"atlas": "ok", "boreal": "ok"}
    assert set(plans) == set(fits) and min(plans.values()) > 0
    assert (db.parent / "reports" / "latest" / "index.html").is_file()


# ------------------------------------------------------------------------------------------------
# fuzz: any manifest value either passes as is or is quarantined with its line and field


NUMERIC = [name for name in RUN_RANGES]
INTEGER = {"total_steps", "warmup_steps"}
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20),
    st.sampled_from(["", "abc", "1e308", "-0", "1e-300", "nan", "inf", "-inf", "1_000", "0x10", " 7 "]),
)


def _plausible(name: str, value) -> float | None:
    """The value the manifest must store, or None when it must be quarantined."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if name in INTEGER and not (math.isfinite(number) and number.is_integer()):
        return None
    low, high = RUN_RANGES[name]
    return number if math.isfinite(number) and low <= number <= high else None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.fixed_dictionaries({name: values for name in NUMERIC}), min_size=1, max_size=4),
       as_yaml=st.booleans())
def test_fuzzed_manifest_values_are_kept_or_quarantined(tmp_path: Path, rows, as_yaml: bool) -> None:
    root = tmp_path / "fuzz"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    runs = [{"run_id": f"r{i}", **row} for i, row in enumerate(rows)]
    if as_yaml:
        name = "runs.yaml"
        (root / name).write_text(yaml.safe_dump({"runs": runs}))
    else:
        name = "runs.csv"
        _write_csv(root / name, [{k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()} for r in runs])
    con = duckdb.connect()
    ingest(root, con)
    stored = {r[0]: r[1:] for r in con.execute(f"SELECT run_id, {', '.join(NUMERIC)} FROM raw.runs").fetchall()}
    quarantined = {(loc, fld) for loc, fld, scope in con.execute(
        "SELECT location, field, scope FROM raw.quarantine").fetchall() if scope == "field"}
    assert set(stored) == {r["run_id"] for r in runs}
    for number, run in enumerate(runs, 1):
        location = f"record {number}" if as_yaml else f"line {number + 1}"
        for name, got in zip(NUMERIC, stored[run["run_id"]], strict=True):
            given_value = run[name]
            if given_value == "" or (as_yaml and given_value is None):
                assert got is None and (location, name) not in quarantined
                continue
            want = _plausible(name, given_value if not isinstance(given_value, str) else given_value.strip())
            if want is None:
                assert got is None and (location, name) in quarantined, (name, given_value)
            else:
                assert got == pytest.approx(want, rel=1e-15) and (location, name) not in quarantined
    con.close()


# ------------------------------------------------------------------------------------------------
# conflicting sources


def _ladder_files(root: Path, *, seed: int = 0) -> tuple[Path, list[dict[str, str]]]:
    """One small csv family under ``root/csv``; its runs.csv rows."""
    write_demo(root, seed=seed, fmt="csv", n_families=1, config=SMALL)
    return root / "csv", _read_csv(root / "csv" / "runs.csv")


def _clean(root: Path) -> tuple[duckdb.DuckDBPyConnection, dict[str, tuple[str, str]]]:
    con = duckdb.connect()
    ingest(root, con)
    C.clean(con)
    excluded = {r[0]: (r[1], r[2]) for r in con.execute(
        "SELECT run_id, reason, detail FROM clean.exclusions WHERE kind = 'run'").fetchall()}
    return con, excluded


def test_second_manifest_changing_n_params_is_a_conflict(tmp_path: Path) -> None:
    logs, runs = _ladder_files(tmp_path / "logs")
    run = runs[3]
    _write_csv(tmp_path / "logs" / "later" / "runs.csv", [dict(run, n_params=repr(float(run["n_params"]) * 100))])
    con, excluded = _clean(tmp_path / "logs")
    reason, detail = excluded[run["run_id"]]
    assert reason == C.CONFLICTING_METADATA
    assert f"n_params: {float(run['n_params'])} (csv/runs.csv line 5)" in detail
    assert f"{float(run['n_params']) * 100} (later/runs.csv line 2)" in detail
    assert con.execute("SELECT n_params FROM clean.runs WHERE run_id = ?", [run["run_id"]]).fetchone() == (None,)
    assert set(excluded) == {run["run_id"]}  # the others are untouched


def test_same_run_twice_in_one_manifest(tmp_path: Path) -> None:
    logs, runs = _ladder_files(tmp_path / "logs")
    changed, equal = runs[0], runs[1]
    _write_csv(logs / "runs.csv", [*runs, dict(changed, n_params="58000000.0", family="other"), dict(equal)])
    _, excluded = _clean(tmp_path / "logs")
    reason, detail = excluded.pop(changed["run_id"])
    assert reason == C.CONFLICTING_METADATA
    line_a, line_b = 2, len(runs) + 2
    assert (f"family: {changed['family']} (csv/{changed['run_id']}.csv, csv/runs.csv line {line_a}) "
            f"vs other (csv/runs.csv line {line_b})") in detail
    assert f"n_params: 10000000.0 (csv/runs.csv line {line_a}) vs 58000000.0 (csv/runs.csv line {line_b})" in detail
    assert excluded == {}  # listed twice with the same values: no conflict


def test_copy_of_a_run_in_another_folder(tmp_path: Path) -> None:
    logs, runs = _ladder_files(tmp_path / "logs")
    same, changed = runs[0]["run_id"], runs[1]["run_id"]
    # an identical copy: counted once, no conflict
    (tmp_path / "logs" / "copy").mkdir()
    shutil.copy(logs / f"{same}.csv", tmp_path / "logs" / "copy" / f"{same}.csv")
    # a copy under another family with other train losses: the real losses must not be replaced
    rows = _read_csv(logs / f"{changed}.csv")
    _write_csv(tmp_path / "logs" / "other" / f"{changed}.csv",
               [dict(r, train_loss=repr(float(r["train_loss"]) + 0.5)) for r in rows])
    con, excluded = _clean(tmp_path / "logs")
    reason, detail = excluded.pop(changed)
    assert reason == C.CONFLICTING_LOGS
    first = rows[0]
    assert detail.startswith(f"{len(rows)} steps logged with different values by csv/{changed}.csv, "
                             f"other/{changed}.csv (step {first['step']}: csv/{changed}.csv: train_loss "
                             f"{float(first['train_loss'])!r} vs other/{changed}.csv: train_loss "
                             f"{float(first['train_loss']) + 0.5!r})")
    assert excluded == {}
    n_rows = len(_read_csv(logs / f"{same}.csv"))
    assert con.execute("SELECT n_rows FROM clean.exclusions WHERE run_id = ? AND reason = ?",
                       [same, C.DUPLICATE_STEPS]).fetchone() == (n_rows,)
    assert con.execute("SELECT count(*) FROM clean.points WHERE run_id = ?", [same]).fetchone() == (1,)
    # the conflicting steps are in no clean table; the family label of the copy is a conflict too
    assert con.execute("SELECT count(*) FROM clean.steps WHERE run_id = ?", [changed]).fetchone() == (0,)


def test_copy_under_another_family_label_is_a_metadata_conflict(tmp_path: Path) -> None:
    logs, runs = _ladder_files(tmp_path / "logs")
    run_id = runs[2]["run_id"]
    rows = _read_csv(logs / f"{run_id}.csv")
    _write_csv(tmp_path / "logs" / "other" / f"{run_id}.csv", [dict(r, family="other") for r in rows])
    con, excluded = _clean(tmp_path / "logs")
    reason, detail = excluded[run_id]
    assert reason == C.CONFLICTING_METADATA
    assert detail.startswith(f"family: atlas (csv/{run_id}.csv, csv/runs.csv line 4) vs other (other/{run_id}.csv)")
    assert con.execute("SELECT family FROM clean.runs WHERE run_id = ?", [run_id]).fetchone() == (None,)
    assert set(excluded) == {run_id}


def test_a_failing_blocking_check_names_the_offending_rows(tmp_path: Path) -> None:
    from dagster_duckdb import DuckDBResource

    from scaling_pipeline.defs.clean import points_valid

    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA clean")
        con.execute("""CREATE TABLE clean.points AS SELECT * FROM (VALUES
                           ('good', 'a', 1e6, 2e7, 1.2e14, 3.0), ('huge', 'b', 1e308, 2e7, 'inf'::DOUBLE, 3.0))
                       AS t(run_id, family, n_params, n_tokens, flops, loss)""")
    result = points_valid(duckdb=DuckDBResource(database=str(db)))
    assert not result.passed and result.metadata["violations"].value == 1
    assert result.description.startswith("1 points with non-positive/non-finite N, D, C or loss: run_id='huge', "
                                         "family='b', n_params=1e+308")
