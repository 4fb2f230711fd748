"""The chapter report: each step's result over seeds beside the chapter's own band, and the
chapter's questions answered with paired comparisons, read back from the store alone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from fmtrain.analysis import intervals, tables

REPORT_FILE = "chapter-report.md"
BANDS_FIGURE = "report-val-loss-bands.png"
INTERVALS_FIGURE = "report-final-metrics.png"
AGGREGATED = ("final_val_loss", "final_val_accuracy", "best_epoch", "stopped_epoch", "test_accuracy")

# The chapter's own results (its Keras 3 run and nine earlier re-runs of its notebook) on the
# full data: (step, configuration, metric, low, high).
CHAPTER_BAND = (
    ("reloaded model (save-restore): val accuracy", "save-restore", "reload_whole_val_accuracy", 0.875, 0.884),
    ("best checkpoint (checkpoint): val loss", "checkpoint", "best_checkpoint_val_loss", 0.312, 0.325),
    ("best checkpoint (checkpoint): val accuracy", "checkpoint", "best_checkpoint_val_accuracy", 0.884, 0.889),
    ("early stopping: stopped_epoch (0-based)", "early-stopping", "stopped_epoch", 7, 16),
    ("early stopping: val accuracy", "early-stopping", "final_val_accuracy", 0.877, 0.886),
    ("early stopping: val loss", "early-stopping", "final_val_loss", 0.322, 0.331),
)


def overfitting_gap(record) -> float | None:
    """Final val_loss minus the last epoch's train loss."""
    losses = record.curves.get("loss") or []
    final = record.scores.final_val_loss
    return None if not losses or final is None else final - losses[-1]


def metric(name):
    return lambda record: record.scores.get(name)


# The chapter's questions: (question, configuration A, configuration B, [(what, value of a run)]).
QUESTIONS = (
    ("RMSprop vs Adam", "rmsprop-val", "adam",
     (("final val_loss", metric("final_val_loss")),
      ("epochs until val_loss stops improving (best_epoch)", metric("best_epoch")))),
    ("no Dropout vs Dropout(0.3)", "adam", "dropout",
     (("overfitting gap (final val_loss minus final train loss)", overfitting_gap),)),
    ("20 epochs vs early stopping", "dropout", "early-stopping",
     (("final val_loss", metric("final_val_loss")), ("epochs spent", metric("epochs_run")))),
)


@dataclass
class Aggregate:
    """One configuration over its seeds."""

    config: str
    seeds: list[int]
    summaries: dict[str, intervals.Summary]
    val_loss_curves: list[list[float]]


@dataclass
class Answer:
    """One of the chapter's questions, answered by paired comparisons over the same seeds."""

    question: str
    a: str
    b: str
    verdicts: list[str]
    differences: list[intervals.Difference] = field(default_factory=list)


@dataclass
class ChapterReport:
    parent_run_id: str
    seeds: list[int]
    aggregates: dict[str, Aggregate]
    steps: list[tuple[str, tuple[float, float], intervals.Summary | None, bool | None]]
    answers: list[Answer]
    settings: dict[str, str]

    def markdown(self) -> str:
        return to_markdown(self)


def build(parent_run_id: str) -> ChapterReport:
    """Read a sweep's finished children from the store and compute the report."""
    from fmtrain.tracking import queries

    parent = queries.run_record(parent_run_id)
    children = [c for c in queries.children(parent_run_id) if c.status == "FINISHED"]
    if not children:
        raise ValueError(f"run {parent_run_id} has no FINISHED child runs to report on")
    records = queries.with_curves(children)
    tests = queries.test_accuracies([c.run_id for c in children])
    by_config: dict[str, dict[int, object]] = defaultdict(dict)
    for record in records:  # oldest first: a resumed sweep's later run of a seed wins
        record.metrics = dict(record.metrics)
        if record.run_id in tests:
            record.metrics["test_accuracy"] = tests[record.run_id]
        by_config[record.config][record.seed or 0] = record
    # The sweep's order (the chapter's), whichever child started first.
    order = list(parent.labels.sweep_configs)
    rank = {name: order.index(name) if name in order else len(order) for name in by_config}
    return compute(parent_run_id, dict(sorted(by_config.items(), key=lambda item: rank[item[0]])),
                   settings=parent.shared_settings)


def compute(parent_run_id: str, by_config: dict[str, dict[int, object]],
            settings: dict | None = None) -> ChapterReport:
    """The report from records grouped by configuration and seed (anything with ``metrics``,
    ``curves`` and typed ``scores``, as records.RunRecord)."""
    aggregates = {}
    for config, runs in by_config.items():
        summaries = {}
        for name in AGGREGATED:
            values = [r.scores.get(name) for r in runs.values()]
            if any(v is not None for v in values):
                summaries[name] = intervals.summarize(values)
        aggregates[config] = Aggregate(config, sorted(runs), summaries,
                                       [r.curves.get("val_loss") or [] for r in runs.values()])
    steps = []
    for step, config, name, low, high in CHAPTER_BAND:
        values = [r.scores.get(name) for r in by_config.get(config, {}).values()]
        summary = intervals.summarize(values) if any(v is not None for v in values) else None
        inside = None if summary is None else low <= summary.mean <= high
        steps.append((step, (low, high), summary, inside))
    answers = []
    for question, a, b, measures in QUESTIONS:
        if a not in by_config or b not in by_config:
            continue
        answer = Answer(question, a, b, [])
        for what, value in measures:
            pairs = [{seed: value(r) for seed, r in by_config[c].items() if value(r) is not None}
                     for c in (a, b)]
            difference = intervals.paired(*pairs)
            answer.differences.append(difference)
            answer.verdicts.append(intervals.verdict(difference, what, a, b))
        answers.append(answer)
    seeds = sorted({seed for runs in by_config.values() for seed in runs})
    return ChapterReport(parent_run_id, seeds, aggregates, steps, answers, dict(settings or {}))


def to_markdown(report: ChapterReport) -> str:
    """The report as Markdown, as logged on the parent and shown as its description."""
    lines = [f"# The chapter with {len(report.seeds)} seed(s): {', '.join(map(str, report.seeds))}", ""]
    if report.settings:
        lines += ["Settings: " + ", ".join(f"{k}={v}" for k, v in sorted(report.settings.items())), ""]
    lines += ["Values are mean ± standard deviation [95% bootstrap interval of the mean] over seeds.", "",
              "## The chapter's steps against its own results", "",
              tables.markdown(["step", "the chapter's band", "fmtrain", "mean inside the band"], [
                  [step, f"{low:g}-{high:g}", summary.text(1 if "epoch" in step else 4) if summary else "not run",
                   "-" if inside is None else ("yes" if inside else "no")]
                  for step, (low, high), summary, inside in report.steps]),
              "", "## Each configuration", "",
              tables.markdown(["configuration", "seeds", *AGGREGATED], [
                  [config, len(aggregate.seeds), *(aggregate.summaries[name].text(1 if "epoch" in name else 4)
                                                   if name in aggregate.summaries else "-" for name in AGGREGATED)]
                  for config, aggregate in report.aggregates.items()])]
    lines += ["", "## The chapter's questions", ""]
    for answer in report.answers:
        lines.append(f"**{answer.question}** ({answer.a} vs {answer.b}, paired by seed):")
        lines.append("")
        lines += [f"- {verdict}" for verdict in answer.verdicts]
        lines.append("")
    lines += [f"![validation loss by epoch, mean and band]({BANDS_FIGURE})", "",
              f"![final metrics with intervals]({INTERVALS_FIGURE})", ""]
    return "\n".join(lines)


def figures(report: ChapterReport) -> dict:
    """The bands figure and the dot-and-interval figure, by file name."""
    from fmtrain.analysis import figures

    return {
        BANDS_FIGURE: figures.band_figure({c: a.val_loss_curves for c, a in report.aggregates.items()}),
        INTERVALS_FIGURE: figures.interval_figure(
            {c: {m: a.summaries[m] for m in ("final_val_loss", "final_val_accuracy") if m in a.summaries}
             for c, a in report.aggregates.items()}),
    }


def report(parent_run_id: str, *, output=None, log: bool = True) -> ChapterReport:
    """``fmtrain report``: build the report from the store, write it to ``output``, and (with
    ``log``) log it on the parent run and set it as the parent's description."""
    from pathlib import Path

    from fmtrain.tracking import logged, store

    store.open_store(select=False)
    chapter = build(parent_run_id)
    text = chapter.markdown()
    drawn = figures(chapter)
    if output is not None:
        folder = Path(output)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / REPORT_FILE).write_text(text)
        for name, figure in drawn.items():
            figure.savefig(folder / name)
    if log:
        logged.log_report(parent_run_id, REPORT_FILE, text, drawn)
    return chapter
