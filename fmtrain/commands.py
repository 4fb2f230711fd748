"""What each ``fmtrain`` subcommand does: check the input, call the library, print a report.

Everything that can be checked (configuration, settings, data) is checked before a run is
created, so bad input never leaves a run behind.
"""

from __future__ import annotations

import argparse
import logging
import os

from fmtrain import configs
from fmtrain.cli import overrides_from


def is_user_error(error: Exception) -> bool:
    """Whether ``error`` comes from the user's input or environment, not from a bug."""
    from mlflow.exceptions import MlflowException

    return isinstance(error, (ValueError, OSError, MlflowException))


def describe(error: Exception) -> str:
    """One line for a person: the first line of the error's message."""
    text = str(error).strip() or type(error).__name__
    if hasattr(error, "message"):  # MlflowException keeps the useful text here
        text = str(error.message).strip() or text
    return text.splitlines()[0]


def list_configs(args: argparse.Namespace) -> int:
    width = max(map(len, configs.CONFIGS))
    print(f"{'configuration':<{width}}  what it reproduces / what it changes from the default")
    for name, (summary, _) in configs.CONFIGS.items():
        changes = ", ".join(f"{k}={configs.format_value(v)}" for k, v in configs.changed_fields(name).items())
        default = " (default)" if name == configs.DEFAULT_CONFIG else ""
        print(f"{name:<{width}}  {summary}{default}\n{'':<{width}}    {changes or 'nothing: it is the default'}")
    print("\ndefault settings: " + ", ".join(
        f"{k}={v}" for k, v in configs.DEFAULT.to_params().items()))
    return 0


def train(args: argparse.Namespace) -> int:
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


def register(args: argparse.Namespace) -> int:
    from fmtrain import registry

    version = registry.register(args.run_id, args.name, args.alias)
    alias = f" with alias {args.alias}" if args.alias else ""
    print(f"registered run {args.run_id} as {args.name} version {version.version}{alias}")
    print(f"  load it with models:/{args.name}/{version.version}"
          + (f" or models:/{args.name}@{args.alias}" if args.alias else ""))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the subcommand named in ``args.command``."""
    _calm_frameworks()
    handlers = {"configs": list_configs, "train": train, "register": register}
    return handlers[args.command](args)


def _calm_frameworks() -> None:
    # TensorFlow's C++ start-up notices and retracing warnings say nothing a user can act on;
    # FMTRAIN_DEBUG=1 keeps them.
    if os.environ.get("FMTRAIN_DEBUG"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
