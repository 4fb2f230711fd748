"""A search's trial as a Ray Tune class trainable whose ``step()`` is one epoch.

The training thread (the whole run, as ``fmtrain train`` makes it) waits at the end of each
epoch (``verdicts.Gate``) for Tune to go on; ``step()`` reads the driver's verdict for the trial
(pruned by ASHA, stopped by the time budget) and lets the thread go on, or stop training at that
epoch and end its own run. See ``tuning.engine`` for why.
"""

from __future__ import annotations

import threading

import ray
from ray import tune

from fmtrain.errors import one_line
from fmtrain.tracking import monitoring
from fmtrain.tuning.verdicts import Gate

CLEANUP_SECONDS = 20.0
# Result keys: epochs trained so far (ASHA's time, which a trial run again after its worker died
# continues from its last completed epoch), and the error of a trial whose training failed.
EPOCHS_DONE = "epochs_done"
FAILED = "trial_error"


class Trial(tune.Trainable):
    """One trial: ``function(job, settings, shared, gate)`` in a thread, one epoch per step."""

    def setup(self, config, function=None, job=None, shared=None, verdicts=None):
        self.function, self.job, self.shared, self.verdicts = function, job, shared, verdicts
        monitoring.name_node()  # the trial's system metrics say which machine they measure
        self._start(config)

    def reset_config(self, new_config):
        """A worker kept for the search's next trial (``reuse_actors``): the last trial's thread
        is ended as ``cleanup()`` ends it, and the new trial's starts. The worker's imports
        (TensorFlow, MLflow) and the data it holds serve every trial it trains."""
        self._end_thread()
        self._start(new_config)
        return True

    def _start(self, config):
        self.gate = Gate()
        self.outcome: dict | None = None
        self.error: BaseException | None = None
        self.stepped, self.last = False, False
        self.running = self.trial_id  # a reused worker's trial_id is the next trial's from reset
        settings = dict(config)

        def run():
            try:
                self.outcome = self.function(self.job, settings, self.shared, self.gate)
            except BaseException as error:  # noqa: BLE001 - handed to step(), which reports it
                self.error = error
            finally:
                self.gate.results.put(("end",))

        self.thread = threading.Thread(target=run, name="fmtrain-trial", daemon=True)
        self.thread.start()

    def step(self):
        stopped = {}
        if self.stepped:
            verdict = ray.get(self.verdicts.pending.remote(self.trial_id))
            if verdict is not None and verdict.kind in ("pruned", "budget"):
                # The thread stops training at the epoch it waits after and ends its run: the
                # next thing it hands over is its end.
                if not self.last:
                    stopped = {"stopped_by": verdict.kind}
                self.gate.stop(verdict)
            else:
                self.gate.proceed()
        self.stepped = True
        item = self.gate.results.get()
        if item[0] == "epoch":
            _, epoch, metrics, self.last = item
            return {**metrics, "epoch": epoch, EPOCHS_DONE: epoch + 1, "last_epoch": self.last}
        self.thread.join()
        if self.error is not None:
            # Reported, not raised: Tune runs a trial again (FailureConfig) when its worker dies,
            # never when its own training failed, which would fail again.
            return {FAILED: one_line(self.error), "done": True}
        return {**(self.outcome or {}), **stopped, "done": True}

    def cleanup(self):
        self._end_thread()

    def _end_thread(self):
        if self.thread.is_alive():
            self.gate.stop(ray.get(self.verdicts.why.remote(self.running), timeout=30))
            # The thread stops at the end of its current step and ends its run; one that does
            # not in time is left to the driver, which ends its run.
            self.thread.join(timeout=CLEANUP_SECONDS)
