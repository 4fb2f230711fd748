"""Names shared across the MLflow boundary: tags, experiment, model and artifact names.

The floor of the tracking package: it imports nothing, so every other module can use it.
"""

DEFAULT_EXPERIMENT = "fashion-mnist"
CHAMPION_ALIAS = "champion"
# The name of a run's best checkpoint among its logged models (its final model has its
# configuration's name).
CHECKPOINT_MODEL = "best-checkpoint"

# Tags fmtrain sets on runs.
CONFIG_TAG = "fmtrain.config"
# Why a run that did not finish ended: the reason a person reads, and its cause as one word of
# records.Cause (signal, process lost, worker died, error).
ERROR_TAG = "fmtrain.error"
END_CAUSE_TAG = "fmtrain.end_cause"
# The job (a sweep's child, a search's trial) whose attempts make the run: an attempt run again
# after its worker died finds its run by it.
JOB_TAG = "fmtrain.job"
SWEEP_TAG = "fmtrain.sweep.configs"
SEEDS_TAG = "fmtrain.sweep.seeds"
SEED_TAG = "fmtrain.seed"
# On a run whose epochs were computed once by another run's fit() (a sweep's shared epochs,
# learning/trajectory.py): that run's id.
EPOCHS_FROM_TAG = "fmtrain.epochs_from"
# On the run `mlflow run . -P resume=RUN_ID` makes for its command: the run that went on.
RESUMED_RUN_TAG = "fmtrain.resumed_run_id"
# MLflow shows this tag as the run's description (Markdown) on the run page.
DESCRIPTION_TAG = "mlflow.note.content"
BEST_TAG = "fmtrain.best_run_id"
BEST_CONFIG_TAG = "fmtrain.best_config"
EVALUATED_TAG = "fmtrain.evaluated_model_uri"
# MLflow's own tag for nested runs.
PARENT_TAG = "mlflow.parentRunId"

# Tags of a search's runs: the parent's search, each trial's Optuna number, and a trial stopped
# early by the search (pruned at an epoch, or out of the search's time budget).
SEARCH_TAG = "fmtrain.tune.search"
STUDY_TAG = "fmtrain.tune.study"
TRIAL_TAG = "fmtrain.tune.trial"
PRUNED_TAG = "fmtrain.tune.pruned"
PRUNED_EPOCH_TAG = "fmtrain.tune.pruned_epoch"
STOPPED_BY_TAG = "fmtrain.tune.stopped_by"

# Artifacts of a sweep's parent run.
SWEEP_FIGURE = "sweep-val-loss.png"
SWEEP_CSV = "sweep-summary.csv"
SWEEP_MD = "sweep-summary.md"

# Each open run's tag refreshed while its process lives (Unix seconds), so that runs left
# RUNNING by a process that died (SIGKILL, power loss, out of memory) can be found.
HEARTBEAT_TAG = "fmtrain.heartbeat"
# The host and process id of the process that opened the run ("host:pid"): on that host, a
# run whose process no longer exists is known to be abandoned without waiting for its heartbeat.
PROCESS_TAG = "fmtrain.process"
# Which machine or container that host is (hostname, boot id, pid namespace) and when the process
# started (clock ticks since boot): a run is known to be abandoned only when both match here and
# the process is gone (pids are reused, and containers share hostnames).
HOST_TAG = "fmtrain.process.host"
START_TAG = "fmtrain.process.start"
# Where the run's journal is kept while the store is away (host:folder), for `fmtrain sync`.
JOURNAL_TAG = "fmtrain.journal"
# Set when the run's journal is first used (host:folder): its records wait on that host, for
# `fmtrain sync` there (reap, on another host, says so rather than ending the run).
JOURNAL_WAITS_TAG = "fmtrain.journal.waits"
# The cores the process may run on when it opened the run (a parallel sweep pins its workers).
CORES_TAG = "fmtrain.process.cores"

# The run's resumable state, replaced at each epoch's end (tracking.states), under this artifact
# path; each resume of the run, as a JSON list of {at, why, from_epoch}; the model name a run
# registers its model as when it finishes (a resumed run registers it too).
RESUME_DIR = "resume"
RESUMES_TAG = "fmtrain.resumes"
REGISTER_TAG = "fmtrain.register_as"
# MLflow's tag on a dataset input that says which split it is (training, validation, test).
DATA_CONTEXT_TAG = "mlflow.data.context"

# A sweep parent's params that say how it ran, not how each child trains: every other param of
# the parent is a setting its children share.
SWEEP_PARAMS = ("configs", "seeds", "workers", "ray_address", "share_epochs")
