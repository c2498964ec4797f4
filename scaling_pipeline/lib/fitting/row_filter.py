"""``fit --where``: a row filter in a tiny grammar, parsed here and applied with pandas (never eval, never SQL).

    filter  := clause ("and" clause)*
    clause  := COLUMN | "not" COLUMN | COLUMN OP VALUE
    OP      := "==" | "=" | "!=" | "<" | "<=" | ">" | ">="
    VALUE   := a number (1e21, -3, 0.5) | a quoted string ('x' or "x") | true | false

``COLUMN`` alone keeps rows whose value is true (true/1/yes, case-insensitive; empty is false); column names
are letters, digits and ``_ . / -``, or quoted with backticks. Comparisons with a number compare numerically
(a non-numeric cell never matches); with a string, as text.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .common import FitError

_TOKEN = re.compile(r"""\s*(?:(?P<op><=|>=|==|!=|=|<|>)|`(?P<qcol>[^`]+)`|(?P<str>'[^']*'|"[^"]*")
                        |(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))|(?P<word>[A-Za-z_][\w./-]*))""",
                    re.X)
_OPS = {"==": operator.eq, "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
        ">": operator.gt, ">=": operator.ge}
_TRUE, _FALSE = {"true", "1", "yes", "y", "t", "1.0"}, {"false", "0", "no", "n", "f", "", "0.0", "nan", "none"}


@dataclass(frozen=True)
class Clause:
    column: str
    op: str | None = None  # None: the column's truth value
    value: Any = True  # the compared value (with op), or True/False (without: "COL" / "not COL")


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) of each token; an unreadable character raises FitError naming it."""
    out, pos = [], 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            bad = text[pos:].strip()[:20]
            raise FitError(f"--where: cannot read {bad!r} at position {pos + 1} of {text!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


def parse_where(text: str) -> list[Clause]:
    """The clauses of ``text`` (all must hold); bad syntax raises FitError naming the token and what was expected."""
    toks = _tokens(text)
    clauses: list[Clause] = []
    i = 0

    def expect(what: str) -> tuple[str, str, int]:
        if i >= len(toks):
            raise FitError(f"--where: expected {what} at the end of {text!r}")
        return toks[i]

    def fail(tok: tuple[str, str, int], what: str) -> FitError:
        return FitError(f"--where: unexpected {tok[1]!r} at position {tok[2] + 1} of {text!r}; expected {what}")

    while True:
        kind, tok, pos = expect("a column name")
        negate = kind == "word" and tok.lower() == "not"
        if negate:
            i += 1
            kind, tok, pos = expect("a column name after 'not'")
        if kind not in ("word", "qcol") or (kind == "word" and tok.lower() in ("and", "not")):
            raise fail(toks[i], "a column name")
        column = tok
        i += 1
        if i < len(toks) and toks[i][0] == "op" and not negate:
            op = toks[i][1]
            i += 1
            vkind, vtok, _ = expect(f"a number or quoted string after {op!r}")
            if vkind == "num":
                value: Any = float(vtok)
            elif vkind == "str":
                value = vtok[1:-1]
            elif vkind == "word" and vtok.lower() in ("true", "false"):
                value = vtok.lower() == "true"
            else:
                raise fail(toks[i], f"a number, a quoted string, true or false after {op!r}")
            i += 1
            clauses.append(Clause(column, op, value))
        else:
            clauses.append(Clause(column, None, not negate))
        if i == len(toks):
            return clauses
        if toks[i][0] == "word" and toks[i][1].lower() == "and":
            i += 1
            continue
        raise fail(toks[i], "'and' or the end" if toks[i][0] != "op" else "'and' (no comparison after 'not COL')")


def _truth(col: pd.Series, name: str) -> np.ndarray:
    if col.dtype == bool:
        return col.to_numpy()
    text = col.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip().lower())
    unknown = sorted(set(text) - _TRUE - _FALSE)
    if unknown:
        raise FitError(f"--where: column {name!r} is not true/false: it holds {unknown[:3]!r}; compare it instead "
                       f"(e.g. {name} == 'value')")
    return text.isin(_TRUE).to_numpy()


def apply_where(df: pd.DataFrame, clauses: list[Clause]) -> pd.DataFrame:
    """The rows of ``df`` for which every clause holds; a clause naming a missing column raises FitError."""
    keep = np.ones(len(df), dtype=bool)
    for c in clauses:
        if c.column not in df.columns:
            raise FitError(f"--where: no column {c.column!r} (columns: {list(df.columns)})")
        col = df[c.column]
        if c.op is None:
            hit = _truth(col, c.column) == c.value
        elif isinstance(c.value, bool):
            if c.op not in ("==", "=", "!="):
                raise FitError(f"--where: {c.column} {c.op} {str(c.value).lower()}: true/false compare with == or !=")
            hit = (_truth(col, c.column) == c.value) == (c.op != "!=")
        elif isinstance(c.value, float):
            values = pd.to_numeric(col, errors="coerce").to_numpy(float)
            with np.errstate(invalid="ignore"):
                hit = _OPS[c.op](values, c.value) & ~np.isnan(values)
        else:
            hit = _OPS[c.op](col.astype(str).str.strip().to_numpy(), c.value) & col.notna().to_numpy()
        keep &= np.asarray(hit, dtype=bool)
    return df[keep]
