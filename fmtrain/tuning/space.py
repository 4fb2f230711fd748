"""A search space over the settings, as data: read, checked, shown, and turned into Optuna's.

The space maps setting names (the same names as everywhere else: ``learning_rate``,
``dropout_rate``, ``units``, ...) to one of three kinds of dimension::

    {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": true},   # a number, log scale
     "units": {"low": 32, "high": 512, "log": true},              # a whole number, for int settings
     "optimizer": {"choices": ["adam", "rmsprop"]}}               # one of a list

A user's own space is a JSON or YAML file of that shape (``fmtrain tune --space FILE``). This
module imports neither Ray nor MLflow; Optuna only where its objects are built.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from fmtrain.analysis import tables
from fmtrain.learning import configs

# The chapter's hand-picked knobs, each over a range around the chapter's choice (Adam's default
# learning rate 0.001, Dropout(0.3), Dense(100), batch 32, Adam against the chapter's RMSprop).
DEFAULT_SPACE = {
    "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
    "dropout_rate": {"low": 0.0, "high": 0.5},
    "units": {"low": 32, "high": 512, "log": True},
    "batch_size": {"choices": [32, 64, 128, 256]},
    "optimizer": {"choices": ["adam", "rmsprop"]},
}
# Settings a search must not vary: they change where or how fast a run trains, or which data it
# sees, not the model a user would pick; epochs is the budget every trial shares (ASHA's rungs
# are counted in it; early stopping decides when a trial has learned enough).
NOT_SEARCHABLE = ("seed", "limit", "steps_per_execution", "backend", "validation", "epochs")


@dataclass(frozen=True)
class Dimension:
    """One setting's range: ``low``..``high`` (``log`` scale or not), or ``choices``."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None

    @property
    def whole(self) -> bool:
        return configs.knob(self.name).type.startswith("int")

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(configs.format_value(c) for c in self.choices)
        scale = "log scale" if self.log else "uniform"
        kind = "whole numbers" if self.whole else "numbers"
        return f"{kind} {configs.format_value(self.low)} to {configs.format_value(self.high)}, {scale}"


Space = dict[str, Dimension]


def parse_space(data: object, where: str = "the search space") -> Space:
    """Check ``data`` (a mapping of setting name to range) and return its dimensions.

    Raises ValueError naming the setting and what is wrong, in one line.
    """
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{where} must map setting names to ranges, e.g. "
                         '{"dropout_rate": {"low": 0.0, "high": 0.5}}')
    known = [knob.name for knob in configs.knobs()]
    space: Space = {}
    for name, spec in data.items():
        if name not in known:
            raise ValueError(f"{where}: unknown setting {name!r}; the settings are: {', '.join(known)}")
        if name in NOT_SEARCHABLE:
            raise ValueError(f"{where}: {name} is not searched (it is the trials' shared budget or "
                             "changes how or on what a run trains, not the model); set it with --" + name)
        space[name] = _dimension(name, spec, where)
    return space


def _dimension(name: str, spec: object, where: str) -> Dimension:
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: {name} needs {{\"low\": ..., \"high\": ...}} or {{\"choices\": [...]}}, "
                         f"got {spec!r}")
    extra = set(spec) - {"low", "high", "log", "choices"}
    if extra:
        raise ValueError(f"{where}: {name} has unknown key(s) {', '.join(sorted(extra))}; "
                         "use low, high, log or choices")
    if "choices" in spec:
        if set(spec) - {"choices"}:
            raise ValueError(f"{where}: {name} takes either choices or low/high, not both")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"{where}: {name}'s choices must be a non-empty list")
        values = tuple(_value(name, choice, where) for choice in choices)
        if len(set(values)) != len(values):
            raise ValueError(f"{where}: {name}'s choices repeat a value")
        return Dimension(name, choices=values)
    if "low" not in spec or "high" not in spec:
        raise ValueError(f"{where}: {name} needs both low and high (or choices)")
    kind = configs.knob(name).type
    if kind in ("str", "bool"):
        raise ValueError(f"{where}: {name} is not a number; give it choices")
    low, high = _value(name, spec["low"], where), _value(name, spec["high"], where)
    if low is None or high is None:
        raise ValueError(f"{where}: {name}'s low and high must be numbers")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"{where}: {name}'s log must be true or false, got {log!r}")
    if not low < high:
        raise ValueError(f"{where}: {name} needs low < high, got {low} and {high}")
    if log and low <= 0:
        raise ValueError(f"{where}: {name} on a log scale needs low > 0, got {low}")
    return Dimension(name, low=low, high=high, log=log)


def _value(name: str, value: object, where: str):
    """One value of ``name``, checked by the configuration's parser (whole numbers stay whole)."""
    try:
        return configs.parse_value(name, value)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def load_space(path: str | Path | None = None) -> Space:
    """The space in ``path`` (JSON or YAML), or DEFAULT_SPACE."""
    if path is None:
        return parse_space(DEFAULT_SPACE, "the default search space")
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"cannot read the search space {path}: {error.strerror or error}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as error:  # noqa: BLE001 - any parse error is the file's, in one line
        raise ValueError(f"{path} is not valid {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'}: "
                         f"{' '.join(str(error).split())}") from None
    return parse_space(data, str(path))


def to_data(space: Space) -> dict:
    """The space as plain data again (for the parent run's ``space.json``)."""
    out = {}
    for name, dim in space.items():
        if dim.choices is not None:
            out[name] = {"choices": list(dim.choices)}
        else:
            out[name] = {"low": dim.low, "high": dim.high, **({"log": True} if dim.log else {})}
    return out


def space_table(space: Space) -> str:
    """The space as a Markdown table, as ``--show-space`` prints it."""
    chapter = {name: getattr(configs.DEFAULT, name) for name in space}
    return tables.markdown(["setting", "range", "the chapter's"], [
        [name, dim.describe(), "Keras's default" if chapter[name] is None else configs.format_value(chapter[name])]
        for name, dim in space.items()])


def check_against(space: Space, base: configs.TrainConfig) -> None:
    """Refuse, before anything starts, a range that the configuration cannot take at its ends
    (``dropout_rate`` up to 1, say), or a setting given both on the command line and in the space."""
    import dataclasses

    for name, dim in space.items():
        for value in dim.choices if dim.choices is not None else (dim.low, dim.high):
            try:
                dataclasses.replace(base, **{name: value})
            except ValueError as error:
                raise ValueError(f"the search space's {name} range cannot be trained: {error}") from None


def optuna_distributions(space: Space) -> dict:
    """Optuna's distributions for the space (whole-number settings as IntDistribution)."""
    from optuna import distributions

    out = {}
    for name, dim in space.items():
        if dim.choices is not None:
            out[name] = distributions.CategoricalDistribution(list(dim.choices))
        elif dim.whole:
            out[name] = distributions.IntDistribution(int(dim.low), int(dim.high), log=dim.log)
        else:
            out[name] = distributions.FloatDistribution(float(dim.low), float(dim.high), log=dim.log)
    return out


def importances(space: Space, trials: list[tuple[dict, float]], seed: int = 0) -> dict[str, float]:
    """How much each setting explains the objective over ``trials`` ((settings, val_loss) pairs),
    by Optuna's fANOVA evaluator; {} with fewer than two trials or when every value is the same."""
    import optuna

    usable = [(params, value) for params, value in trials
              if value is not None and math.isfinite(value) and set(space) <= set(params)]
    if len(usable) < 2 or len({value for _, value in usable}) < 2:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = optuna_distributions(space)
    study = optuna.create_study(direction="minimize")
    for params, value in usable:
        study.add_trial(optuna.trial.create_trial(
            params={name: params[name] for name in space}, distributions=dists, value=value))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    try:
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (RuntimeError, ValueError):  # fANOVA cannot tell (a setting that never varied, say)
        return {}
