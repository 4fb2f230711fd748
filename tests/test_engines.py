"""Where a sweep's runs execute: the engine's decisions, on no data and no store."""

import os
import pickle
import signal

import pytest

from fmtrain import errors
from fmtrain.execution import engine as engines
from fmtrain.execution import signals


@pytest.fixture
def cores(monkeypatch):
    """Pretend the machine has N cores and that no RAY_ADDRESS is set."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def set_cores(count):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(count)))

    set_cores(2)
    return set_cores


def test_the_default_is_two_workers_of_one_thread_on_two_cores(cores, monkeypatch):
    monkeypatch.setattr(engines, "ray_installed", lambda: True)
    placement = engines.plan(None, None, jobs=8)
    assert placement == engines.Placement(workers=2, address=None, threads=1)
    assert not placement.in_process
    assert placement.describe() == ("up to 2 at once on a local Ray instance, each in its own worker "
                                    "process with 1 thread")
    cores(16)
    assert engines.plan(4, None, jobs=8) == engines.Placement(workers=4, address=None, threads=4)


def test_one_worker_or_one_job_trains_in_this_process(cores, monkeypatch):
    monkeypatch.setattr(engines, "ray_installed", lambda: True)
    assert engines.plan(1, None, jobs=8).in_process
    assert engines.plan(None, None, jobs=1).in_process
    assert engines.plan(4, None, jobs=0).in_process  # a resumed sweep with nothing left to train
    assert engines.plan(4, None, jobs=3).workers == 3  # no idle workers


def test_without_ray_the_default_is_one_worker_and_more_are_refused(cores, monkeypatch):
    monkeypatch.setattr(engines, "ray_installed", lambda: False)
    assert engines.plan(None, None, jobs=8).in_process
    with pytest.raises(ValueError, match=r"--workers 2 trains the children in Ray workers, and Ray is "
                                         r"not installed; install it with `pip install '\.\[ray\]'` in fmtrain's checkout"):
        engines.plan(2, None, jobs=8)
    with pytest.raises(ValueError, match=r"--max-concurrent 3 trains the trials in Ray workers"):
        engines.plan(3, None, jobs=8, option="--max-concurrent", what="trials")


def test_a_cluster_address_comes_from_the_option_or_ray_address(cores, monkeypatch):
    monkeypatch.setattr(engines, "ray_installed", lambda: True)
    assert engines.plan(2, "10.0.0.5:6379", jobs=1) == engines.Placement(1, "10.0.0.5:6379", 1)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.6:6379")
    assert engines.plan(None, None, jobs=8).address == "10.0.0.6:6379"
    assert engines.plan(1, None, jobs=8).in_process  # --workers 1 stays here, whatever the environment
    assert engines.plan(2, "local", jobs=8).address is None  # Ray's word for "start one here"
    with pytest.raises(ValueError, match="needs --workers 2 or more"):
        engines.plan(1, "10.0.0.5:6379", jobs=8)


def test_one_thread_per_worker_holds_tensorflow_openmp_and_xla(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    env = engines.thread_environment(1)
    assert env["TF_NUM_INTRAOP_THREADS"] == env["OMP_NUM_THREADS"] == "1"
    assert env["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    assert "XLA_FLAGS" not in engines.thread_environment(4)


def test_in_process_engine_takes_each_job_once_the_one_before_was_handed_over():
    seen, handed = [], []

    def function(job, shared):
        seen.append(job)
        return job * shared

    def jobs():  # a search asks for its next trial only once the last one's outcome was told
        for job in (1, 2, 3):
            assert handed == list(range(1, job)), handed
            yield job

    outcomes = []
    for outcome in engines.InProcess().run(function, jobs(), 10):
        handed.append(outcome.job)
        outcomes.append(outcome)
    assert [(o.index, o.job, o.value, o.error) for o in outcomes] == [(0, 1, 10, None), (1, 2, 20, None),
                                                                     (2, 3, 30, None)]
    assert seen == [1, 2, 3]


def test_errors_cross_processes_whole():
    """A worker's error reaches the driver through pickle, with its run id and signal."""
    stopped = pickle.loads(pickle.dumps(errors.RunStopped("run x (adam) killed by SIGTERM", "x", 15)))
    assert (str(stopped), stopped.run_id, stopped.signum, stopped.exit_code) == \
        ("run x (adam) killed by SIGTERM", "x", 15, 143)
    assert pickle.loads(pickle.dumps(errors.RunFailed("run y failed", "y"))).run_id == "y"
    assert pickle.loads(pickle.dumps(errors.Stopped(signal.SIGHUP))).signum == signal.SIGHUP


def test_signals_are_only_recorded_while_waiting_in_native_code():
    received = []
    with signals.recorded(received):
        signal.raise_signal(signal.SIGHUP)
    assert received == [signal.SIGHUP]
