"""Fitting families on other workers: ``export-points``, ``fit-family`` and ``import-fits`` (per-family Parquet)."""

from __future__ import annotations

import argparse

from scaling_pipeline.lib.settings import convention_text

from .common import existing_warehouse, family_file_errors, file_settings, open_warehouse


def cmd_export_points(args: argparse.Namespace) -> int:
    from scaling_pipeline.lib.family_parquet import export_points

    with open_warehouse(existing_warehouse(args.db), read_only=True) as con, family_file_errors():
        paths = export_points(con, args.out)
    print(f"wrote {len(paths)} family points files under {args.out}")
    return 0



def cmd_fit_family(args: argparse.Namespace) -> int:
    from scaling_pipeline.lib.family_parquet import fit_family_file

    fit = file_settings(args.settings, {"bootstrap": args.bootstrap, "seed": args.seed}).fit
    with family_file_errors():
        out = fit_family_file(args.points, args.out, fit)
    import pandas as pd

    conventions = pd.read_parquet(args.points, columns=["param_convention"]).param_convention.dropna().unique()
    print(f"wrote {out} and {out.with_name('bootstrap.parquet').name}; "
          f"{convention_text(','.join(sorted(conventions)) or None)}")
    return 0



def cmd_import_fits(args: argparse.Namespace) -> int:
    from scaling_pipeline.lib.family_parquet import import_fits

    with open_warehouse(existing_warehouse(args.db), read_only=False) as con:
        with family_file_errors():
            families = import_fits(con, args.dir)
        settings = con.execute("SELECT settings FROM fits.chinchilla WHERE family = ?", [families[0]]).fetchone()[0]
    print(f"imported {len(families)} families from {args.dir} (fit settings {settings}); the pipeline's fit stage "
          "keeps them while points and its settings are unchanged")
    return 0
