"""What the commands print: a few plain lines per run, sweep or evaluation."""

from __future__ import annotations

from fmtrain.analysis import tables
from fmtrain.learning import configs
from fmtrain.tuning import trials


def configs_table() -> str:
    """The configurations, the chapter step each reproduces and what it changes from the default."""
    rows = [("configuration", "chapter step", "changes from the default")]
    for name, (step, _) in configs.CONFIGS.items():
        changes = ", ".join(f"{k}={configs.format_value(v)}"
                            for k, v in configs.changed_fields(name).items())
        label = f"{name} (default)" if name == configs.DEFAULT_CONFIG else name
        rows.append((label, step, changes or "nothing"))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows]
    lines.append("\ndefault settings: " + ", ".join(
        f"{k}={v}" for k, v in configs.DEFAULT.to_params().items()))
    return "\n".join(lines)


def train_report(outcome) -> str:
    """A few lines on a finished training run (a workflows.train.TrainOutcome)."""
    result, scores = outcome.result, outcome.result.scores
    lines = [
        f"run {outcome.run_id} ({outcome.name}): {len(result.epoch_seconds)} epochs, "
        f"stopped_epoch {result.stopped_epoch}, best_epoch {result.best_epoch}"
        + (" (early stopping)" if result.early_stopped else ""),
        f"  kept model: val_loss {scores.final_val_loss:.4f}, "
        f"val_accuracy {scores.final_val_accuracy:.4f}",
        f"  reload checks: load_weights {scores.reload_weights_val_accuracy:.4f}, "
        f"load_model {scores.reload_whole_val_accuracy:.4f} "
        f"({'equal' if scores.reload_checks_passed else 'DIFFERENT'} to the model in memory)",
    ]
    if scores.best_checkpoint_val_loss is not None:
        lines.append(f"  best checkpoint: val_loss {scores.best_checkpoint_val_loss:.4f}, "
                     f"val_accuracy {scores.best_checkpoint_val_accuracy:.4f}")
    lines.append(f"  {scores.seconds_per_epoch:.2f} s per epoch, fit {result.fit_seconds:.1f} s")
    lines.append(f"  model: {outcome.model_uri}")
    if outcome.registered_version:
        lines.append(f"  registered as version {outcome.registered_version}")
    lines += ui_lines(outcome.link)
    return "\n".join(lines)


def sweep_report(outcome, register_best: str | None) -> str:
    """The summary table of a finished sweep (a workflows.sweep.SweepOutcome) and its best run."""
    from fmtrain.analysis import comparison

    lines = [f"\nsweep {outcome.parent_run_id}: {len(outcome.rows)} configurations\n",
             comparison.to_markdown(outcome.rows)]
    if outcome.best:
        lines.append(f"best: {outcome.best.config} (run {outcome.best.run_id}, "
                     f"val_loss {outcome.best.final_val_loss:.4f})")
    if outcome.registered_version:
        lines.append(f"registered as {register_best} version {outcome.registered_version}, "
                     "alias champion")
    if outcome.report is not None:
        lines.append("")
        lines += [f"{answer.question}: " + "; ".join(answer.verdicts) for answer in outcome.report.answers]
        lines.append(f"chapter report logged on run {outcome.parent_run_id} (chapter-report.md)")
    lines += ui_lines(outcome.link)
    return "\n".join(lines)


def search_report(outcome, register_best: str | None, alias: str | None) -> str:
    """The trials of a finished search (a workflows.search.SearchOutcome) and its best one."""
    lines = [f"\nsearch {outcome.parent_run_id}: {len(outcome.rows)} trials in {outcome.seconds:.0f} s\n",
             trials.to_markdown(outcome.rows, outcome.names, outcome.best)]
    if outcome.best:
        best = outcome.best
        settings = tables.settings_text(best.settings, between=' ', rounded=True)
        lines.append(f"best: trial {best.number} ({settings}; run {best.run_id}, "
                     f"val_loss {best.final_val_loss:.4f}, val_accuracy {best.final_val_accuracy:.4f})")
    else:
        lines.append("best: none (no trial ran to its end)")
    if outcome.registered_version:
        lines.append(f"registered as {register_best} version {outcome.registered_version}, "
                     f"alias {alias or 'champion'}")
    lines += ui_lines(outcome.link)
    return "\n".join(lines)


def search_problems(outcome, register_best: str | None) -> list[str]:
    """What went wrong in a finished search, one line each: failed trials, nothing to register."""
    problems = []
    failed = [row for row in outcome.rows if row.status != "FINISHED" and row.counts]
    if failed:
        problems.append(f"{len(failed)} trial(s) failed: "
                        f"{', '.join(trials.trial_name(row.number) for row in failed)}")
    if register_best and outcome.best is None:
        problems.append(f"no trial ran to its end, so nothing was registered as {register_best}; "
                        "run more trials or give a longer --time_budget")
    return problems


def ui_lines(link) -> list[str]:
    """Where to see the runs (a fmtrain.tracking.ui.UiLink, or None): the command that serves
    a local store, then the address to open."""
    if link is None:
        return []
    if link.serve_command:
        return [f"see it in the MLflow UI: {link.serve_command}", f"  then open {link.url}"]
    return [f"see it in the MLflow UI: {link.url}"]


def evaluation_report(outcome) -> str:
    """Two lines on an evaluation run (a workflows.evaluate.EvaluationOutcome): the chapter's
    argmax accuracy, then MLflow's scores."""
    from fmtrain.analysis import descriptions

    resolved, scores = outcome.resolved, outcome.scores
    version = f" ({resolved.name} version {resolved.version})" if resolved.name else ""
    worst = min(outcome.per_class, key=lambda row: row.f1)
    return (f"evaluated {resolved.uri}{version} on {outcome.test_size} test images: "
            f"argmax accuracy {outcome.accuracy:.4f}; MLflow's evaluator: "
            f"{descriptions.test_scores_text(scores)}, ROC AUC {tables.number(scores.roc_auc)}\n"
            f"  hardest class: {worst.name} (F1 {worst.f1:.3f}); "
            f"evaluation run {outcome.run_id}")


def prediction_line(prediction) -> str:
    """``IMAGE: Sneaker 0.912, Sandal 0.051, Ankle boot 0.020``."""
    classes = ", ".join(f"{name} {probability:.3f}" for name, probability in prediction.top)
    return f"{prediction.source}: {classes}"
