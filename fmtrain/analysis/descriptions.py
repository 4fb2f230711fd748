"""What the MLflow UI says about a run, a sweep and a registered version, as Markdown.

The run page shows a run's description (MLflow's ``mlflow.note.content`` tag) and the registry
shows a model version's: these texts say which step of the chapter a run reproduces, what it
changes from the chapter's final model, and how it came out. The headline comes first, in
plain text: the run page shows a description's first lines until asked for more, and the runs
table's Description column and the registry's version list show the first line as it is, without
rendering Markdown. Plain text from plain values; the tracking boundary stores it.
"""

from __future__ import annotations

import math

from fmtrain.learning import configs


def settings_text(settings: dict) -> str:
    """``epochs=2, limit=500`` from field name -> value (or its text)."""
    return ", ".join(f"{key}={configs.format_value(value)}" for key, value in settings.items())


def run_description(name: str, settings: dict, metrics: dict | None = None) -> str:
    """A training run: its result once it has one, its chapter step, and what its configuration
    and this run change.

    ``settings`` maps fields to values or their text (a TrainConfig's ``to_params()``, or the
    params a run logged); ``metrics`` are the run's single metrics.
    """
    lines = [f"{scores_text(metrics)}.", ""] if metrics else []
    return "\n".join(lines + story_lines(name, settings))


def story_lines(name: str, settings: dict) -> list[str]:
    """The chapter step a configuration reproduces and what it and the run change."""
    if name not in configs.CONFIGS:  # a run from another version of fmtrain
        return []
    changes = settings_text(configs.changed_fields(name)) or "nothing (this is the chapter's final model)"
    lines = [f"The chapter's step: *{configs.CONFIGS[name][0]}*.", "",
             f"Changes from the default: {changes}."]
    if overridden := _overrides(name, settings):
        lines.append(f"Set for this run: {settings_text(overridden)}.")
    return lines


def _overrides(name: str, settings: dict) -> dict:
    """The settings that differ from the named configuration's own."""
    own = configs.resolve(name)
    overridden = {}
    for knob in configs.knobs():
        try:
            value = configs.parse_value(knob.name, settings[knob.name])
        except (KeyError, ValueError):  # not logged, or logged by something else than fmtrain
            continue
        if value != getattr(own, knob.name):
            overridden[knob.name] = value
    return overridden


def scores_text(metrics: dict) -> str:
    """The headline of a finished run: the kept model's validation scores and when it stopped."""
    text = (f"val_loss {_number(metrics.get('final_val_loss'))}, "
            f"val_accuracy {_number(metrics.get('final_val_accuracy'))} (the model kept)")
    if (stopped := metrics.get("stopped_epoch")) is not None:
        text += f", stopped_epoch {int(stopped)}"
    if (best := metrics.get("best_epoch")) is not None:
        text += f", best_epoch {int(best)}"
    return text


def sweep_description(configurations: list[str], settings: dict, table: str, best,
                      seeds: list | None = None) -> str:
    """A sweep's parent run: the best child, what the sweep ran, and its summary table.

    ``best`` is the best SummaryRow, or None while none has finished; ``seeds`` the seeds each
    configuration ran with.
    """
    several = seeds is not None and len(seeds) > 1
    lines = []
    if best is not None:
        which = f"{best.config} (seed {best.seed})" if several else best.config
        lines += [f"Best: {which}, final val_loss {_number(best.final_val_loss)}, "
                  f"val_accuracy {_number(best.final_val_accuracy)} (tag fmtrain.best_config).", ""]
    given = f"; {settings_text(settings)} for every child" if settings else ""
    with_seeds = f", each with seeds {', '.join(map(str, seeds))}" if several else ""
    lines += [f"Sweep of {len(configurations)} configurations of the chapter: "
              f"{', '.join(configurations)}{with_seeds}{given}. The figure `sweep-val-loss.png` "
              "(Artifacts) overlays every child's loss by epoch.", "", table]
    return "\n".join(lines)


def version_description(run_id: str, params: dict, metrics: dict, test: dict | None = None,
                        evaluation_run_id: str | None = None) -> str:
    """A registered model version: its configuration and scores, its source run, its chapter
    step, and its test scores once ``fmtrain evaluate`` has scored it."""
    name = params.get("config", "model")
    headline = f"{name}: {scores_text(metrics)}"
    if test:
        headline += f"; test accuracy {_number(test.get('test_accuracy'))}"
    lines = [headline + ".", "", f"From run `{run_id}`.", "", *story_lines(name, params)]
    if test:
        lines += ["", f"**Test set** (the 10,000 held-out images, evaluation run `{evaluation_run_id}`): "
                      f"loss {_number(test.get('test_loss'))}, accuracy {_number(test.get('test_accuracy'))}, "
                      f"macro F1 {_number(test.get('test_macro_f1'))}."]
    return "\n".join(lines)


def evaluation_description(model_uri: str, metrics: dict, version: str = "") -> str:
    """An evaluation run: its test scores and the model it scored (``version``: which registered
    version that is, as ``NAME version N``)."""
    return (f"test accuracy {_number(metrics.get('test_accuracy'))}, loss {_number(metrics.get('test_loss'))}, "
            f"macro F1 {_number(metrics.get('test_macro_f1'))} on the 10,000 held-out test images.\n\n"
            f"Model: `{model_uri}`" + (f" ({version})." if version else "."))


def _number(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
