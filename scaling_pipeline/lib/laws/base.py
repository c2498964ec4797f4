"""What every law form is: the :class:`Law` base class.

A form is a frozen dataclass deriving from :class:`Law` whose fields are its parameters, in natural
units. Every ``predict`` accepts scalars or array-likes (broadcast together) and returns a ``float`` for
scalar inputs, an ``np.ndarray`` otherwise. A law built by :meth:`Law.stack` holds ``S`` laws at once
(each parameter an ``(S, 1)`` column), and its ``predict`` returns ``(S, K)`` arrays for ``K`` points:
that is how plans and the report evaluate every bootstrap law in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    import pandas as pd

    from scaling_pipeline.lib.fitting.common import FitResult

    from .selection import Sample

__all__ = ["Law", "out", "arr"]


def out(value: ArrayLike) -> float | np.ndarray:
    """``float`` for a 0-d result, the array otherwise."""
    value = np.asarray(value, dtype=float)
    return float(value) if value.ndim == 0 else value


def arr(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=float)


class Law:
    """Base of every law form; subclasses are frozen dataclasses whose fields are the parameters.

    Class attributes a form sets:

    * ``name``: the form's name (registry key, ``scaling-pipeline fit --form``);
    * ``formula``: one line for help texts, e.g. ``"L = E + A/N^alpha + B/D^beta"``;
    * ``params``: the fitted parameters, in field order (what ``fit --json`` prints under ``params``);
    * ``units``: parameter name -> unit, for every parameter (help texts list these names);
    * ``variables``: ``predict`` keyword -> default column of a runs CSV (``n_params`` parameters,
      ``n_tokens`` tokens, ``unique_tokens``, ``flops`` FLOPs);
    * ``optimal_allocation``: a method ``(C FLOPs, …) -> (N*, D*)`` where the form defines a
      compute-optimal allocation (further arguments: the form's limits, e.g. unique tokens), ``None``
      otherwise; plans are made only from such forms;
    * :meth:`samples`: which of a family's runs the pipeline's model comparison fits it to (default: every
      run, inputs from ``variables``); a form overrides it to select runs or to say it does not apply;
    * :meth:`sql_expression`: the form as a SQL expression, for code that evaluates it inside DuckDB (forms
      that offer it).
    """

    name: ClassVar[str]
    formula: ClassVar[str]
    params: ClassVar[tuple[str, ...]]
    units: ClassVar[Mapping[str, str]]
    variables: ClassVar[Mapping[str, str]]
    optimal_allocation: ClassVar[Callable[..., tuple[Any, Any]] | None] = None

    def predict(self, *args: ArrayLike, **inputs: ArrayLike) -> float | np.ndarray:
        """The law at the given inputs (the keywords of ``variables``)."""
        raise NotImplementedError

    @classmethod
    def sql_expression(cls, inputs: Mapping[str, str], params: Mapping[str, str] | None = None) -> str:
        """The form as a DuckDB SQL expression equal to ``predict``: ``inputs`` maps each ``predict`` keyword,
        and ``params`` each parameter (default: a column of the parameter's name), to a SQL expression written
        by code (column names, ``?`` placeholders), never user text. Raises ``NotImplementedError`` for forms
        without one."""
        raise NotImplementedError(f"form {cls.name!r} has no SQL expression")

    @classmethod
    def fit(cls, inputs: Mapping[str, ArrayLike], y: ArrayLike, *, loss: str = "huber", delta: float = 1e-3,
            **options: Any) -> FitResult:
        """Fit the form to ``y`` observed at ``inputs`` (``predict`` keyword -> values), with the form's fitter
        in :mod:`scaling_pipeline.lib.fitting`. ``loss`` and ``delta`` are used by forms that offer them
        (the result's ``loss`` says which objective was minimised)."""
        raise NotImplementedError

    @classmethod
    def samples(cls, points: pd.DataFrame) -> list[Sample]:
        """The data the per-family comparison fits this form to, from a family's ``clean.points`` rows: one
        :class:`~.selection.Sample` per fit (default: every run, ``predict`` keywords from ``variables``).
        Raises :class:`~.selection.NotApplicable` with the reason when the form does not apply."""
        from .selection import sample_of

        return [sample_of(points, cls.variables)]

    @classmethod
    def columns(cls, x: str | None = None, vars: Sequence[str] | None = None) -> dict[str, str]:
        """``predict`` keyword -> runs-CSV column: ``variables``, with ``x`` naming the column of a
        one-variable form's input. Forms whose inputs the user names (``vars``) override this."""
        from scaling_pipeline.lib.fitting.common import FitError

        cols = dict(cls.variables)
        if vars is not None:
            raise FitError(f"form {cls.name!r} takes no list of input columns (vars); its inputs are {cols}")
        if x is not None:
            if list(cols) != ["x"]:
                raise FitError(f"form {cls.name!r} has no single input x to name; its inputs are {cols}")
            cols["x"] = x
        return cols

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Law:
        """The law from a ``{name: value}`` mapping with exactly the names of ``params`` (what
        ``fit --json`` prints); values are floats, or ``(S, 1)`` columns for ``S`` laws at once."""
        missing = set(cls.params) - set(params)
        extra = set(params) - set(cls.params)
        if missing or extra:
            raise ValueError(f"{cls.__name__} needs params {list(cls.params)}; "
                             f"missing {sorted(missing)}, unexpected {sorted(extra)}")
        return cls(**{k: out(params[k]) for k in cls.params})

    def to_params(self) -> dict[str, Any]:
        """``{name: value}`` of the parameters, as :meth:`from_params` takes them."""
        return {k: getattr(self, k) for k in self.params}

    @classmethod
    def stack(cls, rows: ArrayLike, names: Sequence[str] | None = None) -> Law:
        """``S`` laws at once from an ``(S, P)`` array whose columns are the parameters ``names`` (default
        ``params``): every parameter becomes an ``(S, 1)`` column, so ``predict`` on ``K`` points returns
        ``(S, K)``."""
        names = tuple(cls.params if names is None else names)
        rows = np.asarray(rows, dtype=float)
        if rows.ndim != 2 or rows.shape[1] != len(names):
            raise ValueError(f"{cls.__name__} rows must have {len(names)} columns {list(names)}, "
                             f"got shape {rows.shape}")
        return cls.from_params({k: rows[:, i:i + 1] for i, k in enumerate(names)})

