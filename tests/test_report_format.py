"""The report's numbers: one format (k/M/B/T, FLOPs as 1e21), intervals too wide to mean anything shown as
"not identified", every budget decade planned, and the published reference laws."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from scaling_pipeline.lib.allocate import BESIROGLU, HOFFMANN, allocate
from scaling_pipeline.lib.quality import THRESHOLDS
from scaling_pipeline.lib.reporting.formatting import (MAX_DECADES, fmt_ci, fmt_flops, fmt_hci, fmt_human,
                                                       fmt_times, identified, prose)
from scaling_pipeline.lib.reporting.sections import reference_section
from scaling_pipeline.lib.warehouse import plan_budgets


def test_an_interval_over_a_few_decades_is_not_identified():
    assert MAX_DECADES == THRESHOLDS.coef_decades == 3.0  # the same line that withholds a plan
    wide = fmt_hci(17.2e3, 5.56e-19, 17.2e3)  # seen in a report: N* in [5.56e-19, 17.2k]
    assert ">[not identified]</span>" in wide and wide.startswith("17.2k ")
    assert "5.56e-19" not in re.sub(r"title='[^']*'", "", wide)  # the ends only in the hover text
    narrow = fmt_hci(14.3e9, 11.8e9, 16.7e9)
    assert narrow == "14.3B <span class=ci>[11.8B, 16.7B]</span>"
    assert identified(1.0, 1000.0) and not identified(1.0, 1000.1)
    assert not identified(0.0, 3.0) and not identified(-1.0, 3.0)  # reaches zero: any ratio
    assert not identified(2.0, 1.0) and not identified(np.nan, 1.0)
    assert fmt_ci(2757.0, (4.218, 2.479e11)).startswith("2.757k <span class='ci unidentified'")
    assert fmt_ci(0.3428, (0.3309, 0.3558)) == "0.3428 <span class=ci>[0.3309, 0.3558]</span>"
    assert fmt_ci(2.0038, (1.9869, 2.0133), ".4f") == "2.0038 <span class=ci>[1.9869, 2.0133]</span>"
    assert fmt_hci(5.0, np.nan, 7.0) == "5"  # no interval at all: nothing, not "not identified"


def test_one_number_format():
    assert [fmt_human(v) for v in (12_800, 3.4e8, 1.43e10, 1.16e12, 2.5e16, 3.2e-5, 0.5, 0)] == \
        ["12.8k", "340M", "14.3B", "1.16T", "2.5e16", "3.2e-5", "0.5", "0"]
    assert fmt_human(430.6, 4) == "430.6" and fmt_human(2207.4, 4) == "2.207k"
    assert [fmt_flops(c) for c in (1e17, 5.76e23, 3.8e21)] == ["1e17", "6e23", "4e21"]
    assert fmt_flops(5.76e23, 3) == "5.76e23"


@pytest.mark.parametrize("largest", [1.16e13, 5e14, 3.8e21, 2e19, 5e25])
def test_plan_budgets_include_every_decade(largest):
    budgets = plan_budgets(largest)
    k = np.log10(budgets)
    assert np.allclose(k, np.round(k)) and np.all(np.diff(np.round(k)) == 1)  # no decade missing
    assert budgets[0] <= min(largest / 10, 1e18) * 1.0000001 and budgets[-1] >= max(10 ** np.floor(np.log10(largest)) * 1000, 1e26) * 0.999999
    if largest == 1.16e13:  # a small GPU ladder: 1e17 used to be missing between 1e16 and 1e18
        assert 1e16 in budgets and 1e17 in budgets and 1e18 in budgets
    assert plan_budgets(largest, largest / 1e4)[0] == 10 ** min(np.ceil(np.log10(largest / 1e4)), 18)


def test_plan_budgets_start_at_the_smallest_runs_decade():
    assert plan_budgets(3.8e21, 9.8e16)[:3] == [1e17, 1e18, 1e19]  # the demo ladder: its runs start near 1e17
    assert plan_budgets(3.8e21, 1e17)[0] == 1e17 and plan_budgets(3.8e21, 2e18)[0] == 1e18


def test_reference_section_shows_hoffmann_and_epochs_corrected_law():
    assert (BESIROGLU.E, BESIROGLU.A, BESIROGLU.B, BESIROGLU.alpha, BESIROGLU.beta) == \
        (1.82, 482.01, 2085.43, 0.3478, 0.3658)
    page = reference_section()
    assert "Hoffmann et al. 2022: E = 1.69, A = 406.4, B = 410.7, α = 0.34, β = 0.28" in page
    assert "Besiroglu et al. 2024 (Epoch): E = 1.82, A = 482.01, B = 2085.43, α = 0.3478, β = 0.3658" in page
    table = page.split("<table class=reference>", 1)[1].split("</table>", 1)[0]
    row = re.search(r"<tr><td>1e21</td>(.*?)</tr>", table).group(1)
    cells = re.findall(r"<td>([^<]*)</td>", row)
    h, b = allocate(HOFFMANN, 1e21), allocate(BESIROGLU, 1e21)
    assert cells == [fmt_human(h.n_params), fmt_human(h.n_tokens), f"{h.tokens_per_param:.0f}", f"{h.loss:.4f}",
                     fmt_human(b.n_params), fmt_human(b.n_tokens), f"{b.tokens_per_param:.0f}", f"{b.loss:.4f}"]
    assert cells[0] == "1.82B" and cells[4] == "2.78B"
    assert "e+" not in page and not re.search(r"\d\.\d{4,}e", page)  # no Python float repr in the tables
    assert "<td>5.76e23</td>" in page and "N ≤ 1B" in page and math.isclose(b.tokens_per_param, 21.59, rel_tol=1e-3)


def test_messages_show_numbers_as_the_page_writes_them():
    msg = "stopped at 2.307e+09 tokens of 3.92e+09; A in [7.53e-18, 2.39e+11]; N (1.5e+05) run-1e+05 a/1e+05.csv <b>"
    assert prose(msg) == ("stopped at 2.307e9 tokens of 3.92e9; A in [7.53e-18, 2.39e11]; N (1.5e5) run-1e+05 "
                          "a/1e+05.csv &lt;b&gt;")  # run ids and paths are data: left as they are
    assert fmt_times(7.8e-7) == "7.8e-7×" and fmt_times(2604) == "2,604×" and fmt_times(0.26) == "0.26×"


@pytest.mark.parametrize("lo, hi", [(2e8, 5e8), (3.1e8, 3.6e8), (1e6, 1e12)])
def test_count_axes_get_few_distinct_labels_on_any_range(lo, hi):
    import matplotlib.pyplot as plt

    from scaling_pipeline.lib.reporting.figures import _human_axis

    fig, ax = plt.subplots()
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    _human_axis(ax.xaxis)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text() and lo <= t.get_position()[0] <= hi]
    minor = [t.get_text() for t in ax.xaxis.get_minorticklabels() if t.get_text()]
    plt.close(fig)
    assert 2 <= len(labels) <= 9 and len(set(labels)) == len(labels) and not minor, labels
    assert all(re.fullmatch(r"[\d.]+[kMBT]?", t) for t in labels), labels  # 250M, not 2.5×10⁸
