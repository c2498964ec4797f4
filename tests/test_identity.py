"""Run ids unique within the log root (readers) and metadata ids matched to logged runs by full id or
unique suffix (lib/identity), on real files and a real DuckDB file."""

from __future__ import annotations

import gzip
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from scaling_pipeline.lib.formats import SourceUnit, discover
from scaling_pipeline.lib.formats.common import path_run_id
from scaling_pipeline.lib.identity import Matches, match_run_ids, resolve_run_ids, suffixes
from scaling_pipeline.lib.ingest import ingest
from tests.test_formats import write_tb

LOGGED = ["base/train", "large/train", "xl/train", "csv/atlas-10M-tpp12", "csv/atlas-20M-tpp12", "solo"]


def test_full_id_and_unique_suffix_match() -> None:
    got = match_run_ids(["large/train", "atlas-10M-tpp12", "csv/atlas-20M-tpp12", "solo"], LOGGED)
    assert got.mapping == {"large/train": "large/train", "atlas-10M-tpp12": "csv/atlas-10M-tpp12",
                           "csv/atlas-20M-tpp12": "csv/atlas-20M-tpp12", "solo": "solo"}
    assert got.ambiguous == {} and got.unmatched == ()


def test_ambiguous_suffix_is_reported_never_picked() -> None:
    got = match_run_ids(["train", "xl/train"], LOGGED)
    assert got.mapping == {"xl/train": "xl/train"}
    assert got.ambiguous == {"train": ("base/train", "large/train", "xl/train")}


def test_suffixes_start_after_a_slash_and_the_full_id_wins() -> None:
    got = match_run_ids(["rain", "10M-tpp12", "train", "nothing", "xl/train/extra"], [*LOGGED, "train"])
    assert got.mapping == {"train": "train"}  # a root-level run named exactly so beats the suffix candidates
    assert got.unmatched == ("10M-tpp12", "nothing", "rain", "xl/train/extra")
    assert suffixes("a/b/c") == ["b/c", "c"] and suffixes("a/") == [] and suffixes("plain") == []


def test_two_metadata_ids_may_name_one_run() -> None:
    got = match_run_ids(["csv/atlas-10M-tpp12", "atlas-10M-tpp12"], LOGGED)
    assert got.mapping == {"csv/atlas-10M-tpp12": "csv/atlas-10M-tpp12", "atlas-10M-tpp12": "csv/atlas-10M-tpp12"}


def test_matching_100k_runs() -> None:
    logged = [f"family-{i // 100}/size-{i % 100}/train" for i in range(100_000)]
    meta = [f"size-{i % 100}/train" if i % 2 else logged[i] for i in range(100_000)]  # even: full ids
    got = match_run_ids(meta, logged)
    assert len(got.mapping) == 50_000 and got.unmatched == ()
    assert len(got.ambiguous) == 50 and len(got.ambiguous["size-7/train"]) == 1000  # one per family


def test_resolve_run_ids_renames_metadata_rows_in_duckdb(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE TABLE runs AS SELECT * FROM (VALUES ('atlas-10M-tpp12', 1e7, 'runs.csv'), "
                "('train', 2e7, 'runs.csv'), ('large/train', 3e7, 'runs.csv'), ('ghost', 4e7, 'runs.csv')) "
                "t(run_id, n_params, source_path)")
    con.register("logged", pd.DataFrame({"run_id": LOGGED}))
    got = resolve_run_ids(con, "runs", "logged", "runs_matched")
    assert isinstance(got, Matches) and got.unmatched == ("ghost",)
    assert sorted(con.execute("SELECT * FROM runs_matched").fetchall()) == [
        ("csv/atlas-10M-tpp12", 1e7, "runs.csv"), ("ghost", 4e7, "runs.csv"),
        ("large/train", 3e7, "runs.csv"), ("train", 2e7, "runs.csv")]  # ambiguous 'train' left as named
    assert con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name LIKE '_identity%'").fetchone() == (0,)


# ---------------------------------------------------------------------------------------------
# the readers' ids: the path relative to the log root
# ---------------------------------------------------------------------------------------------


def test_units_without_a_run_id_are_named_by_their_path_under_the_root(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    for model in ("base", "large"):
        write_tb(root / model / "train", {"train/loss": [(1, 3.0)]})
        wb = root / "wb" / model / "wandb" / "run-2024-x" / "files"
        wb.mkdir(parents=True)
        (wb / "wandb-history.jsonl").write_text('{"_step": 1, "loss": 2.0}\n')
        (wb / "config.yaml").write_text(yaml.safe_dump({"wandb_version": 1}))
        (root / "csv" / model).mkdir(parents=True)
        (root / "csv" / model / "m.csv").write_text("step,loss\n1,2.5\n")
        with gzip.open(root / "csv" / model / "z.csv.gz", "wt") as handle:
            handle.write("step,loss\n1,2.5\n")
        (root / "csv" / model / "j.jsonl").write_text('{"step": 1, "loss": 2.5}\n')
        pq.write_table(pa.table({"step": [1], "loss": [2.5]}), root / "csv" / model / "p.parquet")
    (root / "csv" / "named.csv").write_text("run_id,step,loss\nexplicit,1,2.5\n")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ingest(root, con)
    ids = {r for (r,) in con.execute("SELECT DISTINCT run_id FROM raw.metrics").fetchall()}
    assert ids == {*(f"{m}/train" for m in ("base", "large")),
                   *(f"wb/{m}/wandb/run-2024-x" for m in ("base", "large")),
                   *(f"csv/{m}/{stem}" for m in ("base", "large") for stem in ("m", "z", "j", "p")),
                   "explicit"}
    assert con.execute("SELECT count(*) FROM raw.quarantine").fetchone() == (0,)


def test_a_run_directory_that_is_the_root_is_named_by_itself(tmp_path: Path) -> None:
    run = tmp_path / "my-run"
    write_tb(run, {"train/loss": [(1, 3.0)]})
    (unit,) = discover(run)
    assert unit.root == run and path_run_id(unit) == "my-run"
    assert path_run_id(SourceUnit(run / "x.csv.gz", "csv", (run / "x.csv.gz",))) == "x"  # no root: the name


@pytest.mark.parametrize("fast", [True, False])
def test_ids_are_the_same_on_the_fast_and_exact_paths(tmp_path: Path, fast: bool,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from scaling_pipeline.lib.formats import common

    monkeypatch.setattr(common, "FAST_PATH", fast)
    root = tmp_path / "logs"
    for model in ("a", "b"):
        (root / model).mkdir(parents=True)
        (root / model / "m.csv").write_text("step,loss\n" + "".join(f"{s},{3 - s / 1000}\n" for s in range(1, 600)))
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    summary = ingest(root, con)
    assert summary.read_methods == {"csv/fast" if fast else "csv/exact": 2}
    assert con.execute("SELECT run_id, count(*) FROM raw.metrics GROUP BY ALL ORDER BY ALL").fetchall() == [
        ("a/m", 599), ("b/m", 599)]
