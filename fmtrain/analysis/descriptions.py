"""What the MLflow UI says about a run, a sweep and a registered version, as Markdown.

The run page shows a run's description (MLflow's ``mlflow.note.content`` tag) and the registry
shows a model version's: these texts say which step of the chapter a run reproduces, what it
changes from the chapter's final model, and how it came out. The headline comes first, in
plain text: the run page shows a description's first lines until asked for more, and the runs
table's Description column and the registry's version list show the first line as it is, without
rendering Markdown. Plain text from plain values; the tracking boundary stores it.
"""

from __future__ import annotations

from fmtrain.analysis import tables
from fmtrain.learning import configs
from fmtrain.learning.scores import EvaluationScores, Scores


def run_description(name: str, settings: dict, scores: Scores | None = None) -> str:
    """A training run: its result once it has one, its chapter step, and what its configuration
    and this run change.

    ``settings`` maps fields to values or their text (a TrainConfig's ``to_params()``, or the
    params a run logged); ``scores`` the run's, once it has them.
    """
    lines = [f"{scores_text(scores)}.", ""] if scores else []
    return "\n".join(lines + story_lines(name, settings))


def story_lines(name: str, settings: dict) -> list[str]:
    """The chapter step a configuration reproduces and what it and the run change."""
    if name not in configs.CONFIGS:  # a run from another version of fmtrain
        return []
    changes = tables.settings_text(configs.changed_fields(name)) or "nothing (this is the chapter's final model)"
    lines = [f"The chapter's step: *{configs.CONFIGS[name][0]}*.", "",
             f"Changes from the default: {changes}."]
    if overridden := _overrides(name, settings):
        lines.append(f"Set for this run: {tables.settings_text(overridden)}.")
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


def scores_text(scores: Scores) -> str:
    """The headline of a finished run: the kept model's validation scores and when it stopped."""
    text = (f"val_loss {tables.number(scores.final_val_loss)}, "
            f"val_accuracy {tables.number(scores.final_val_accuracy)} (the model kept)")
    if scores.stopped_epoch is not None:
        text += f", stopped_epoch {scores.stopped_epoch}"
    if scores.best_epoch is not None:
        text += f", best_epoch {scores.best_epoch}"
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
        lines += [f"Best: {which}, final val_loss {tables.number(best.final_val_loss)}, "
                  f"val_accuracy {tables.number(best.final_val_accuracy)} (tag fmtrain.best_config).", ""]
    given = f"; {tables.settings_text(settings)} for every child" if settings else ""
    with_seeds = f", each with seeds {', '.join(map(str, seeds))}" if several else ""
    lines += [f"Sweep of {len(configurations)} configurations of the chapter: "
              f"{', '.join(configurations)}{with_seeds}{given}. The figure `sweep-val-loss.png` "
              "(Artifacts) overlays every child's loss by epoch.", "", table]
    return "\n".join(lines)


def version_description(run_id: str, params: dict, scores: Scores, test: EvaluationScores | None = None,
                        evaluation_run_id: str | None = None) -> str:
    """A registered model version: its configuration and scores, its source run, its chapter
    step, and its test scores once ``fmtrain evaluate`` has scored it."""
    name = params.get("config", "model")
    headline = f"{name}: {scores_text(scores)}"
    if test:
        headline += f"; test accuracy {tables.number(test.accuracy_score)}"
    lines = [headline + ".", "", f"From run `{run_id}`.", "", *story_lines(name, params)]
    if test:
        lines += ["", f"**Test set** (the 10,000 held-out images, evaluation run `{evaluation_run_id}`): "
                      f"{test_scores_text(test)}."]
    return "\n".join(lines)


def test_scores_text(test: EvaluationScores) -> str:
    """An evaluation's headline scores: ``accuracy 0.8712, F1 0.8710, log loss 0.3555``."""
    return (f"accuracy {tables.number(test.accuracy_score)}, F1 {tables.number(test.f1_score)}, "
            f"log loss {tables.number(test.log_loss)}")


def evaluation_description(model_uri: str, test: EvaluationScores, version: str = "") -> str:
    """An evaluation run: its test scores and the model it scored (``version``: which registered
    version that is, as ``NAME version N``)."""
    return (f"Test {test_scores_text(test)} on the {test.example_count or 0:,} held-out test images (MLflow's "
            "classifier evaluator: per-class metrics, confusion matrix, ROC and precision-recall curves "
            f"in Artifacts).\n\nModel: `{model_uri}`" + (f" ({version})." if version else "."))
