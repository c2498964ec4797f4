"""Values as the page shows them: floats from anything, numbers with intervals and units (12.8k, 1e23, 4.8×),
HTML-escaped text, matplotlib-safe text and file-name-safe slugs."""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from scaling_pipeline.lib.quality import THRESHOLDS


def num(x, default: float = float("nan")) -> float:
    """A float from anything (None, NA, strings, numpy scalars); ``default`` when that fails."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(v) and not math.isnan(default) else v


def nearly_equal(a, b, rtol: float = 1e-9) -> bool:
    """Equal within ``rtol`` as floats; two NaNs are equal."""
    a, b = num(a), num(b)
    return (np.isnan(a) and np.isnan(b)) or bool(np.isclose(a, b, rtol=rtol, atol=0))


def loads_or(text, default):
    """Parsed JSON ``text`` if of ``default``'s type (a dict or list passes as is), else ``default``."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return default
    if isinstance(text, dict | list):
        return text
    try:
        v = json.loads(text)
    except (TypeError, ValueError):
        return default
    return v if isinstance(v, type(default)) else default


# An interval of a positive quantity whose ends are more than this many decades apart (hi/lo > 1000), or
# whose lower end is at or below zero, says nothing about the quantity: it is printed as "not identified".
# The same threshold withholds a plan when A's or B's interval is that wide (quality.THRESHOLDS.coef_decades).
MAX_DECADES = THRESHOLDS.coef_decades


def identified(lo, hi) -> bool:
    """Whether the interval [lo, hi] of a positive quantity pins it down: both ends finite, lo > 0 and
    log10(hi / lo) <= :data:`MAX_DECADES`."""
    lo, hi = num(lo), num(hi)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
        return False
    return math.log10(hi / lo) <= MAX_DECADES


def fmt_interval(lo, hi, one: Callable[[float], str]) -> str:
    """" [lo, hi]" (ends formatted by ``one``, grey), " [not identified]" for an interval wider than
    :data:`MAX_DECADES` decades or reaching zero, "" when an end is missing. The one way intervals are printed."""
    if not (np.isfinite(num(lo)) and np.isfinite(num(hi))):
        return ""
    if not identified(lo, hi):
        return (f" <span class='ci unidentified' title='interval [{esc(one(num(lo)))}, {esc(one(num(hi)))}] spans "
                f"more than {MAX_DECADES:g} decades'>[not identified]</span>")
    return f" <span class=ci>[{one(num(lo))}, {one(num(hi))}]</span>"


def fmt_ci(value, interval, fmt: str | None = None) -> str:
    """``value`` with its interval: k/M/B/T with 4 significant digits, or the format spec ``fmt`` (".4f")."""
    v = num(value)
    if not np.isfinite(v):
        return "–"
    one = (lambda x: fmt_human(x, 4)) if fmt is None else (lambda x: format(x, fmt))
    ok = interval is not None and len(interval) == 2
    return one(v) + (fmt_interval(interval[0], interval[1], one) if ok else "")


def fmt_hci(value, lo, hi) -> str:
    return fmt_human(value) + fmt_interval(lo, hi, fmt_human)


def fmt_human(x, digits: int = 3) -> str:
    """12.8k, 340M, 14.3B, 1.16T (``digits`` significant digits); 2.5e15 beyond 1000T, 3.2e-5 below 0.001."""
    v = num(x)
    if not np.isfinite(v):
        return "–"
    a = abs(v)
    if a >= 1e15 or (a < 1e-3 and a != 0):
        return _sci(v, digits)
    for thr, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= thr:
            return f"{v / thr:.{digits}g}{suffix}"
    return f"{v:.{digits}g}"


def _sci(v: float, digits: int) -> str:
    """2.5e15, -3.2e-5 (no '+', no leading zeros in the exponent)."""
    m, e = f"{v:.{digits - 1}e}".split("e")
    m = m.rstrip("0").rstrip(".") if "." in m else m
    return f"{m}e{int(e)}"


def fmt_flops(c, digits: int = 1) -> str:
    """1e23, 2.7e12 (no '+', no leading zeros in the exponent)."""
    v = num(c)
    return _sci(v, digits) if np.isfinite(v) and v > 0 else "–"


def fmt_times(x) -> str:
    v = num(x)
    if not np.isfinite(v):
        return "–"
    return f"{_sci(v, 2)}×" if v < 0.001 or v >= 1e6 else f"{v:.2g}×" if v < 10 else f"{v:,.0f}×"


def fmt_tpp(x) -> str:
    """Tokens per parameter: 4.8, 81, 385, 120k."""
    v = num(x)
    return "–" if not np.isfinite(v) else f"{v:.2g}" if v < 10 else f"{v:.0f}" if v < 1e4 else fmt_human(v)


def fmt_pct(x) -> str:
    v = num(x)
    return f"{v:.2%}" if np.isfinite(v) else "–"


def plural(n: int, word: str, words: str | None = None) -> str:
    """The count and the noun: 1 run, 2 runs, 1,200 runs (``words``: an irregular plural such as families)."""
    return f"{n:,} {word if n == 1 else words or word + 's'}"


# Unicode bidirectional controls: in a name they reorder the text around them on screen (U+202E shows
# "evil\u202etxt.exe" as "evilexe.txt"), so they are shown as their escape text instead.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(s: str) -> str:
    """``s`` with every bidirectional control replaced by its escape text (U+202E -> ``\\u202e``)."""
    return _BIDI.sub(lambda m: f"\\u{ord(m.group()):04x}", s)


def esc(x, limit: int | None = None) -> str:
    """Text from the data (names, run ids, paths, reasons) for HTML: cut to ``limit`` characters (with "…"),
    bidirectional controls made visible, markup escaped. Empty for None/NaN/NA."""
    if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA or x is pd.NaT:
        return ""
    s = str(x)
    if limit is not None and len(s) > limit:
        s = s[:limit - 1] + "…"
    return html.escape(visible(s), quote=True)


_PY_FLOAT = re.compile(r"(?<![\w./-])(\d+(?:\.\d+)?)e([+-])0*(\d+)(?![\w.])")


def prose(x, limit: int | None = None) -> str:
    """A message from the pipeline (reasons, exclusion details, fitter warnings) for HTML as :func:`esc`, with
    Python's float notation in it shown as the page writes numbers (2.307e+09 -> 2.307e9, 1e-05 -> 1e-5)."""
    if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA:
        return ""
    return esc(_PY_FLOAT.sub(lambda m: f"{m[1]}e{'' if m[2] == '+' else '-'}{m[3]}", str(x)), limit)


def mpl_text(s: str) -> str:
    """Text from the data for matplotlib: bidirectional controls made visible, and a '$' in a family name
    must not start math mode (outside math mode matplotlib shows a backslash as is)."""
    return visible(s).replace("$", r"\$")


def slugs(names: list[str]) -> dict[str, str]:
    """File-name-safe, unique slugs; a name that had to be changed gets a short hash of the original."""
    out, used = {}, set()
    for name in names:
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:60] or "family"
        slug = base if base == name else f"{base}-{hashlib.sha1(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
        while slug in used:
            slug = f"{slug}-{hashlib.sha1(slug.encode()).hexdigest()[:4]}"
        used.add(slug)
        out[name] = slug
    return out
