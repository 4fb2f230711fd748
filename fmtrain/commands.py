"""What each ``fmtrain`` subcommand does: check the input, call the library, print a report.

Everything that can be checked (configuration, settings, data) is checked before a run is
created, so bad input never leaves a run behind.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from fmtrain import configs


def is_user_error(error: Exception) -> bool:
    """Bad input or an unusable store, met before any run existed: exit status 2."""
    from fmtrain.tracking import runs

    return runs.is_input_error(error)


def describe(error: Exception) -> str:
    """One line for a person about ``error``."""
    from fmtrain.tracking import runs

    return runs.describe_for_person(error)


def overrides_from(args: argparse.Namespace) -> dict[str, str]:
    """The settings given on the command line, as text keyed by field name."""
    return {k.name: getattr(args, k.name) for k in configs.knobs() if getattr(args, k.name) is not None}


def configs_command(args: argparse.Namespace) -> int:
    """List the configurations and what each changes."""
    width = max(map(len, configs.CONFIGS))
    print(f"{'configuration':<{width}}  what it reproduces / what it changes from the default")
    for name, (summary, _) in configs.CONFIGS.items():
        changes = ", ".join(f"{k}={configs.format_value(v)}" for k, v in configs.changed_fields(name).items())
        default = " (default)" if name == configs.DEFAULT_CONFIG else ""
        print(f"{name:<{width}}  {summary}{default}\n{'':<{width}}    {changes or 'nothing: it is the default'}")
    print("\ndefault settings: " + ", ".join(
        f"{k}={v}" for k, v in configs.DEFAULT.to_params().items()))
    return 0


def train_command(args: argparse.Namespace) -> int:
    """Train one configuration as one run and report it."""
    from fmtrain import data
    from fmtrain.tracking import runs

    config = configs.resolve(args.config, overrides_from(args))
    splits = data.load_splits(args.data_dir, config.limit)
    runs.use_experiment(args.experiment)
    outcome = runs.train_run(config, args.config, splits, register_as=args.register_as,
                             verbose=0 if args.quiet else 2)
    print(run_report(args.config, outcome))
    return 0


def run_report(name: str, outcome) -> str:
    """A few lines on a finished training run."""
    result, metrics = outcome.result, outcome.result.metrics
    lines = [
        f"run {outcome.run_id} ({name}): {len(result.epoch_seconds)} epochs, "
        f"stopped_epoch {result.stopped_epoch}, best_epoch {result.best_epoch}"
        + (" (early stopping)" if result.early_stopped else ""),
        f"  kept model: val_loss {metrics['final_val_loss']:.4f}, "
        f"val_accuracy {metrics['final_val_accuracy']:.4f}",
        f"  reload checks: load_weights {metrics['reload_weights_val_accuracy']:.4f}, "
        f"load_model {metrics['reload_whole_val_accuracy']:.4f} "
        f"({'equal' if metrics['reload_checks_passed'] else 'DIFFERENT'} to the model in memory)",
    ]
    if "best_checkpoint_val_loss" in metrics:
        lines.append(f"  best checkpoint: val_loss {metrics['best_checkpoint_val_loss']:.4f}, "
                     f"val_accuracy {metrics['best_checkpoint_val_accuracy']:.4f}")
    lines.append(f"  {metrics['seconds_per_epoch']:.2f} s per epoch, fit {result.fit_seconds:.1f} s")
    lines.append(f"  model: {outcome.model_uri}")
    if outcome.registered_version:
        lines.append(f"  registered as version {outcome.registered_version}")
    return "\n".join(lines)


def register_command(args: argparse.Namespace) -> int:
    """Register a run's model as a new version, optionally with an alias."""
    from fmtrain import registry

    version = registry.register(args.run_id, args.name, args.alias)
    alias = f" with alias {args.alias}" if args.alias else ""
    print(f"registered run {args.run_id} as {args.name} version {version.version}{alias}")
    print(f"  load it with models:/{args.name}/{version.version}"
          + (f" or models:/{args.name}@{args.alias}" if args.alias else ""))
    return 0


def sweep_command(args: argparse.Namespace) -> int:
    """Run a sweep, print its table; exit 1 if a configuration failed."""
    from fmtrain import comparison, sweep

    outcome = sweep.run_sweep(args.configs, overrides_from(args), data_dir=args.data_dir,
                                 experiment=args.experiment, register_best=args.register_best,
                                 verbose=0 if args.quiet else 2)
    print(f"\nsweep {outcome.parent_run_id}: {len(outcome.rows)} configurations\n")
    print(comparison.to_markdown(outcome.rows))
    if outcome.best:
        print(f"best: {outcome.best['config']} (run {outcome.best['run_id']}, "
              f"val_loss {outcome.best['final_val_loss']:.4f})")
    if outcome.registered_version:
        print(f"registered as {args.register_best} version {outcome.registered_version}, "
              f"alias {sweep.CHAMPION_ALIAS}")
    if outcome.failures:
        print(f"fmtrain: error: {len(outcome.failures)} configuration(s) failed: "
              f"{', '.join(outcome.failures)}", file=sys.stderr)
        return 1
    return 0


def compare_command(args: argparse.Namespace) -> int:
    """Rebuild a sweep's figure and tables from the store; log them only with --log."""
    from pathlib import Path

    from fmtrain import comparison, sweep
    from fmtrain.tracking import sweeps as tracked_sweeps

    if args.log and len(args.run_ids) != 1:
        raise ValueError("--log needs exactly one run id: the sweep's parent run")
    rows, figure = sweep.compare(args.run_ids)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    markdown = comparison.to_markdown(rows)
    figure.savefig(output / tracked_sweeps.FIGURE_FILE)
    (output / tracked_sweeps.TABLE_CSV).write_text(comparison.to_csv(rows))
    (output / tracked_sweeps.TABLE_MD).write_text(markdown)
    print(markdown)
    print(f"figure and tables written to {output}/")
    if args.log:
        tracked_sweeps.log_comparison(args.run_ids[0], figure, rows)
        print(f"logged on run {args.run_ids[0]}")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    """Evaluate a logged or registered model on the test set as an evaluation run."""
    from fmtrain import data, evaluation, registry
    from fmtrain.tracking import evaluation as tracked_evaluation
    from fmtrain.tracking import runs

    resolved = registry.resolve(args.model_uri)
    images, labels, source = data.load_test(args.data_dir)
    model = registry.load_keras_model(resolved.uri)
    result = evaluation.evaluate(model, images, labels)
    runs.use_experiment(args.experiment)
    run_id = tracked_evaluation.log_evaluation(resolved, result, evaluation.figures(result, images, labels), source)
    version = f" ({resolved.name} version {resolved.version})" if resolved.name else ""
    metrics = result.metrics
    print(f"evaluated {resolved.uri}{version} on {len(labels)} test images: "
          f"loss {metrics['test_loss']:.4f}, accuracy {metrics['test_accuracy']:.4f}, "
          f"macro F1 {metrics['test_macro_f1']:.4f}")
    worst = min(result.per_class, key=lambda row: row["f1"])
    print(f"  hardest class: {worst['class']} (F1 {worst['f1']:.3f}); evaluation run {run_id}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the subcommand named in ``args.command``."""
    _calm_frameworks()
    _fail_fast_on_unreachable_store()
    handlers = {"configs": configs_command, "train": train_command, "sweep": sweep_command,
                "compare": compare_command, "register": register_command,
                "evaluate": evaluate_command}
    return handlers[args.command](args)


def _fail_fast_on_unreachable_store() -> None:
    # MLflow retries an HTTP tracking server for minutes by default; a person at a terminal
    # wants to hear within seconds that the store cannot be reached. Their own settings win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def _calm_frameworks() -> None:
    # TensorFlow's start-up notices and retracing warnings say nothing a user can act on;
    # FMTRAIN_DEBUG=1 keeps them.
    if os.environ.get("FMTRAIN_DEBUG"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    # Creating or upgrading the sqlite store's tables is routine, not news.
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
