"""Settings that change the answer, each defined once here with its default, its doc and its allowed values.

The command line, the Dagster resource and run config (thin shells generated from these dataclasses, see
``scaling_pipeline.defs.resources``) and the settings file (:mod:`scaling_pipeline.lib.settings_file`) all
build a :class:`Settings` with :func:`build_settings`; one name per setting everywhere (``bootstrap`` is the
CLI's ``--bootstrap``, the run config's ``bootstrap`` and the file's ``bootstrap``).
Light to import: the CLI reads it to build its help.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

N_BOOT = 200  # bootstrap resamples per family in the pipeline (fit asset, fit-family, run --bootstrap)
MAX_BOOTSTRAP = 10_000  # more resamples do not make a 95% interval meaningfully better, only slower
HUBER_DELTA = 1e-3  # Huber δ on log-loss residuals (Hoffmann et al.; Besiroglu et al.)
LOSSES = ("huber", "huber_loss_space", "mse")
CURVE_LAW_POINTS = ("off", "store", "use")

HPARAM_SELECTIONS = ("envelope", "all")
# param_convention -> the run column holding that parameter count (a run without it uses its n_params)
PARAM_COLUMNS = {"non_embedding": "n_params_non_embedding", "total": "n_params_total"}
PARAM_CONVENTIONS = tuple(PARAM_COLUMNS)


def convention_text(convention: str | None) -> str:
    """How outputs state the parameter count N of a fit or plan (``None``: not known)."""
    what = {"non_embedding": "non-embedding parameters", "total": "total parameters (embeddings included)"}
    return (f"N counts {what[convention]} (param_convention {convention})" if convention in what
            else f"N counts parameters as given ({convention or 'param_convention not stated'})")


class SettingsError(ValueError):
    """A setting with a bad value or an unknown name; the message names it and what is allowed."""


def _setting(default: Any, kind: type, doc: str, allowed: str | None = None,
             ok: Callable[[Any], bool] | None = None, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with its doc, value type (float accepts whole numbers) and allowed values."""
    if choices:
        allowed, ok = "one of " + ", ".join(choices), choices.__contains__
    return field(default=default, metadata={"doc": doc, "kind": kind, "allowed": allowed, "ok": ok})


def _checked(obj: object) -> None:
    """Validate (and normalise: 1 -> 1.0 for a float setting) every field of a settings dataclass."""
    for f in fields(obj):
        meta, value = f.metadata, getattr(obj, f.name)
        if "kind" not in meta or (value is None and f.default is None):
            continue
        kind = meta["kind"]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        allowed = meta["allowed"] or f"a {kind.__name__}"
        if not isinstance(value, kind) or isinstance(value, bool) or (meta["ok"] and not meta["ok"](value)):
            raise SettingsError(f"{f.name}: expected {allowed}, got {getattr(obj, f.name)!r}")
        object.__setattr__(obj, f.name, value)


def doc(cls: type, name: str) -> str:
    """The doc of setting ``name`` of ``cls`` with its default (the Dagster shells' field descriptions)."""
    f = next(f for f in fields(cls) if f.name == name)
    return f"{f.metadata['doc']} (default {f.default!r})"


@dataclass(frozen=True)
class FamilyOptions:
    """Cleaning choices made per family (``families`` overrides them by family)."""

    hparam_selection: str = _setting(
        "envelope", str, "'envelope' keeps, per (N, D), only the run with the lowest final loss (the best of a "
        "hyperparameter sweep; the others are excluded as not_best_hparams, naming it); 'all' keeps every run",
        choices=HPARAM_SELECTIONS)
    param_convention: str = _setting(
        "non_embedding", str, "the parameter count used as N: 'non_embedding' (run column n_params_non_embedding) "
        "or 'total' (n_params_total); a run without that column uses its n_params", choices=PARAM_CONVENTIONS)
    completion_tolerance: float = _setting(
        0.001, float, "a run is schedule-complete when its logged steps or tokens reach the plan within this "
        "fraction (0.001: 3 steps short of 176,703 is complete, 177 short is not); past 1 + this fraction is an "
        "overshoot", "a fraction in [0, 0.5)", lambda v: 0 <= v < 0.5)

    def __post_init__(self) -> None:
        _checked(self)


@dataclass(frozen=True)
class CleanConfig:
    """Knobs of the cleaning stage (all recorded with the result)."""

    divergence_nats: float = _setting(
        1.0, float, "a run whose train loss ends more than this many nats above its best logged value, or that "
        "logs NaN/inf after warm-up, is diverged", "a number > 0", lambda v: v > 0)
    dominated_tolerance: float = _setting(
        0.10, float, "a run whose final loss is more than this fraction above that of a run with no more "
        "parameters and no more tokens (same family) is excluded as dominated", "a number >= 0", lambda v: v >= 0)
    smooth_points: int = _setting(5, int, "without an eval at its last step, a run's final loss is from at least "
                                  "this many of its last train losses (more when the last cleaning.steps.TREND_WINDOW "
                                  "of its steps hold more): their mean plus their trend to the last step, shrunk by "
                                  "its evidence",
                                  "a whole number >= 1", lambda v: v >= 1)
    min_tokens: float = _setting(0.0, float, "runs trained on fewer tokens give no point (below_min_budget)",
                                 "a number >= 0", lambda v: v >= 0)
    min_steps: int = _setting(0, int, "runs with fewer optimizer steps give no point (below_min_budget)",
                              "a whole number >= 0", lambda v: v >= 0)
    family: FamilyOptions = FamilyOptions()  # the options of every family not in ``families``
    families: Mapping[str, FamilyOptions] = field(default_factory=dict)  # family name -> its options

    def __post_init__(self) -> None:
        _checked(self)

    def options(self, family: str | None) -> FamilyOptions:
        """The options of ``family``."""
        return self.families.get(family, self.family) if family is not None else self.family

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FitSettings:
    """How each family is fitted (recorded with every fit; a change refits every family). How many
    processes fit them is not a setting: results do not depend on it."""

    loss: str = _setting("huber", str, "objective: huber = sum of Huber(delta) of log-loss residuals",
                         choices=LOSSES)
    delta: float = _setting(HUBER_DELTA, float, "Huber delta on log-loss residuals", "a number > 0",
                            lambda v: v > 0)
    bootstrap: int = _setting(N_BOOT, int, "bootstrap resamples per family (0: no intervals)",
                              f"a whole number in [0, {MAX_BOOTSTRAP}]", lambda v: 0 <= v <= MAX_BOOTSTRAP)
    seed: int = _setting(0, int, "bootstrap seed", "a whole number")
    level: float = _setting(0.95, float, "level of the bootstrap intervals", "a number in (0, 1)",
                            lambda v: 0 < v < 1)
    curve_law_points: str = _setting(
        "off", str, "curve-law points (fits.curve_points): per size, the losses its longest run's fitted "
        "Multi-Power Law gives for runs decayed at 1/32 … 1/2 of its tokens; 'store' computes and stores them, "
        "'use' also fits L(N, D) to them with the observed points, 'off' neither (off until backtests show their "
        "error within the measured noise)", choices=CURVE_LAW_POINTS)

    def __post_init__(self) -> None:
        _checked(self)


@dataclass(frozen=True)
class ReportSettings:
    """What the report shows."""

    headline_compute: float | None = _setting(
        None, float, "the budget (FLOPs) of every family's 'at a glance' line; unset: the power of ten nearest "
        "10x the family's largest run", "a number of FLOPs > 0", lambda v: v > 0)

    def __post_init__(self) -> None:
        _checked(self)


# settings-file section -> the dataclasses whose fields it holds (family options in [clean] are the defaults)
SECTIONS: dict[str, tuple[type, ...]] = {"clean": (CleanConfig, FamilyOptions), "fit": (FitSettings,),
                                         "report": (ReportSettings,)}
SECTION_OF = {f.name: section for section, classes in SECTIONS.items() for cls in classes for f in fields(cls)
              if "kind" in f.metadata}
FAMILY_KEYS = tuple(f.name for f in fields(FamilyOptions))


@dataclass(frozen=True)
class Settings:
    """Every setting of a pipeline run."""

    clean: CleanConfig = CleanConfig()
    fit: FitSettings = FitSettings()
    report: ReportSettings = ReportSettings()

    def flat(self) -> dict[str, Any]:
        """name -> value of every setting; per-family options as ``families.NAME.option`` (only where they
        differ from the default): what "what changed" compares."""
        out: dict[str, Any] = {}
        for part in (self.clean, self.clean.family, self.fit, self.report):
            out.update({f.name: getattr(part, f.name) for f in fields(part) if "kind" in f.metadata})
        for name, opts in sorted(self.clean.families.items()):
            out.update({f"families.{name}.{k}": getattr(opts, k) for k in FAMILY_KEYS
                        if getattr(opts, k) != getattr(self.clean.family, k)})
        return out


def build_settings(*layers: Mapping[str, Any]) -> Settings:
    """The settings from ``layers`` of ``name -> value`` (later layers win; None: not set there), on top of
    the defaults. ``families`` maps a family name to its own option overrides. The one conversion used by
    the CLI, the Dagster shells and the settings file; a bad value or unknown name raises SettingsError."""
    flat: dict[str, Any] = {}
    fams: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for key, value in layer.items():
            if key == "families":
                for name, opts in (value or {}).items():
                    fams.setdefault(str(name), {}).update({k: v for k, v in dict(opts).items() if v is not None})
            elif value is not None:
                if key not in SECTION_OF:
                    raise SettingsError(f"unknown setting {key!r}; known: {', '.join(sorted(SECTION_OF))}")
                flat[key] = value

    def pick(*classes: type) -> dict[str, Any]:
        return {f.name: flat[f.name] for cls in classes for f in fields(cls) if f.name in flat}

    family = FamilyOptions(**pick(FamilyOptions))
    families = {}
    for name, opts in fams.items():
        if unknown := sorted(set(opts) - set(FAMILY_KEYS)):
            raise SettingsError(f"families[{name!r}]: unknown option {unknown[0]!r}; known: {', '.join(FAMILY_KEYS)}")
        try:
            families[name] = replace(family, **opts)
        except SettingsError as exc:
            raise SettingsError(f"families[{name!r}]: {exc}") from None
    return Settings(clean=CleanConfig(**pick(CleanConfig), family=family, families=families),
                    fit=FitSettings(**pick(FitSettings)), report=ReportSettings(**pick(ReportSettings)))


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``"min_tokens 0 → 1e+09"`` for every setting whose value differs between two :meth:`Settings.flat`."""
    def show(v: Any) -> str:
        return "unset" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    return [f"{k} {show(old.get(k))} → {show(new.get(k))}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]
