"""The demo log tree: a simulated ladder written in every log format, with file faults applied."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .design import SimConfig
from .faults import BAD_TOKEN
from .ladder import simulate_ladder
from .loss import family_mpl

MIXED = "mixed"
TEXT_SUFFIXES = {"csv": ".csv", "jsonl": ".jsonl"}  # formats whose metric files get file faults


@dataclass
class DemoSummary:
    """What :func:`write_demo` wrote (paths absolute; ``faults`` as in faults.json)."""

    out_dir: Path
    seed: int
    fmt: str
    formats: dict[str, str]  # family -> format
    files: list[Path]
    n_runs: int
    n_metric_rows: int
    truth_path: Path
    faults_path: Path
    faults: dict[str, Any] = field(repr=False)

    def __str__(self) -> str:
        return (f"{len(self.formats)} families, {self.n_runs} runs, {self.n_metric_rows} metric "
                f"rows, {len(self.files)} files ({self.fmt})")



@contextmanager
def _quiet_tensorboardx() -> Iterator[None]:
    """Silence tensorboardX's warning about the NaN/inf losses the diverged runs log on purpose."""
    logger = logging.getLogger("tensorboardX")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def write_demo(out_dir: Path, seed: int = 0, fmt: str = MIXED, n_families: int = 6,
               config: SimConfig | None = None) -> DemoSummary:
    """Simulate a ladder and write it as logs under ``out_dir/<format>/``, plus ``truth.json`` and
    ``faults.json``; then damage files as recorded in ``faults['truncated'|'bad_row']``.

    ``fmt='mixed'``: family ``i`` in ``FORMATS[i % 6]`` (every reader gets exercised); otherwise
    all families in ``fmt``. File faults need csv/jsonl metric files; else they are recorded as
    skipped. Same seed -> byte-identical csv/jsonl/json files. Writes nothing outside ``out_dir``.
    """
    from scaling_pipeline.lib.formats import FORMATS, write_logs  # noqa: PLC0415 - lazy

    if fmt != MIXED and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected {MIXED!r} or one of "
                         f"{', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} is not empty: write the demo into a new or empty folder "
                         "(TensorBoard and MLflow writers would add a second copy of every run)")
    ladder = simulate_ladder(seed, n_families, config)
    family_fmt = {name: FORMATS[i % len(FORMATS)] if fmt == MIXED else fmt
                  for i, name in enumerate(ladder.truth)}
    files: list[Path] = []
    with _quiet_tensorboardx():
        for f in dict.fromkeys(family_fmt.values()):
            names = [name for name, g in family_fmt.items() if g == f]
            files += write_logs(f, out_dir / f, ladder.runs[ladder.runs["family"].isin(names)],
                                ladder.metrics[ladder.metrics["family"].isin(names)])
    faults = json.loads(json.dumps(ladder.faults))  # a copy; file facts are added below
    for kind, damage in (("truncated", _truncate), ("bad_row", _bad_row)):
        if kind in faults:
            f = family_fmt[faults[kind]["family"]]
            path = out_dir / f / f"{faults[kind]['run_id']}{TEXT_SUFFIXES.get(f, '')}"
            if f in TEXT_SUFFIXES and path.is_file():
                faults[kind].update(applied=True, file=path.relative_to(out_dir).as_posix(),
                                    **damage(path, faults[kind]))
            else:
                faults[kind].update(applied=False,
                                    reason=f"no csv/jsonl metric file ({f} format)")
    truth = {"seed": seed, "fmt": fmt, "n_families": n_families,
             "law": "L = E + A/N^alpha + B/D^beta (nats/token; N = n_params, D = tokens_planned)",
             "config": asdict(ladder.config),
             "families": {name: {**asdict(t), "format": family_fmt[name],
                                 "mpl_drop": dict(zip(("B", "C", "beta", "gamma"), family_mpl(t, ladder.config)))}
                          for name, t in ladder.truth.items()},
             "in_flight": ladder.in_flight}
    truth_path, faults_path = out_dir / "truth.json", out_dir / "faults.json"
    truth_path.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    faults_path.write_text(json.dumps(faults, indent=2) + "\n", encoding="utf-8")
    return DemoSummary(out_dir.resolve(), seed, fmt, family_fmt, files, len(ladder.runs),
                       len(ladder.metrics), truth_path.resolve(), faults_path.resolve(), faults)


def _data_lines(path: Path) -> tuple[list[bytes], int]:
    """Lines of a metric file (with newlines) and how many header lines precede the data."""
    lines = path.read_bytes().splitlines(keepends=True)
    return lines, 1 if path.suffix == ".csv" else 0


def _truncate(path: Path, fault: dict[str, Any]) -> dict[str, Any]:
    """Cut ``path`` in the middle of the line after its first ``fault['complete_rows']`` rows."""
    lines, header = _data_lines(path)
    index = header + fault["complete_rows"]
    kept = b"".join(lines[:index]) + lines[index][: len(lines[index]) // 2]
    path.write_bytes(kept)
    return {"line": index + 1, "rows_lost": len(lines) - index, "bytes_kept": len(kept)}


_JSON_NUMBER = r'(?P<value>-?[0-9][0-9.eE+-]*|NaN|-?Infinity)'


def _bad_row(path: Path, fault: dict[str, Any]) -> dict[str, Any]:
    """Replace field ``fault['field']`` of the first row logging ``fault['step']`` by BAD_TOKEN
    (CSV: the bare token; JSON lines: the token as a JSON string)."""
    lines, header = _data_lines(path)
    name, step = fault["field"], fault["step"]
    if header:
        columns = lines[0].decode().rstrip("\n").split(",")
        rows = [line.decode().rstrip("\n").split(",") for line in lines[header:]]
        index = header + [int(cells[columns.index("step")]) for cells in rows].index(step)
        cells = rows[index - header]
        original, cells[columns.index(name)] = cells[columns.index(name)], BAD_TOKEN
        lines[index] = (",".join(cells) + "\n").encode()
    else:
        index = [json.loads(line).get("step") for line in lines].index(step)
        text = lines[index].decode()
        match = re.search(rf'"{re.escape(name)}"\s*:\s*{_JSON_NUMBER}', text)
        if match is None:
            raise ValueError(f"{path} line {index + 1}: expected a numeric {name!r}")
        original = match["value"]
        lines[index] = (text[:match.start("value")] + json.dumps(BAD_TOKEN)
                        + text[match.end("value"):]).encode()
    path.write_bytes(b"".join(lines))
    return {"line": index + 1, "original": original}

