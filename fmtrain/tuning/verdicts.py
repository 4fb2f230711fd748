"""The gate between a search's trial and its training: after each epoch the training thread hands
over the epoch's metrics and waits for the search's word (go on, or stop and why).

No Ray and no MLflow here: ``tune_engine`` drives the gate from Ray Tune, and the workflow puts
``gate_callback`` into the trial's run.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from fmtrain.errors import Stopped

# The longest a trial waits for the search's word after an epoch; the search answers within a
# second while it runs.
GATE_SECONDS = 600.0


@dataclass(frozen=True)
class Verdict:
    """Why Tune stopped a trial before it ended by itself."""

    kind: str  # "pruned" (ASHA), "budget" (the time budget), "signal", "aborted" (an error)
    epoch: int | None = None  # the last epoch trained (0-based), for "pruned"
    signum: int | None = None  # for "signal"


class Gate:
    """Between a trial's training thread and its trainable: the thread hands over each epoch's
    metrics and waits; ``proceed()`` lets it train the next epoch, ``stop()`` ends it."""

    def __init__(self):
        self.results: queue.Queue = queue.Queue()
        self._go = threading.Semaphore(0)
        self.verdict: Verdict | None = None

    def epoch_end(self, epoch: int, metrics: dict, last: bool) -> Verdict | None:
        """In the training thread: report ``epoch`` (``last``: training ends after it anyway)
        and wait; None means train on."""
        self.results.put(("epoch", epoch, metrics, last))
        if not self._go.acquire(timeout=GATE_SECONDS):  # the search is gone: stop
            return Verdict("aborted")
        return self.verdict

    def proceed(self) -> None:
        self._go.release()

    def stop(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self._go.release()


def gate_callback(gate: Gate, on_stopped: Callable[[Verdict], None]):
    """A Keras callback that waits at ``gate`` after each epoch (after the epoch's metrics were
    logged) and stops training as the verdict says: at the end of this epoch for a pruned or
    out-of-budget trial (``on_stopped`` records why), at once for a signal or an error. An epoch
    after which training ends anyway (EarlyStopping, the last epoch) is reported as the last, and
    a verdict on it changes nothing: the trial ended by itself."""
    import keras

    class _AtGate(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            # The search stopped on a signal while this epoch trained: stop at the end of the step.
            if gate.verdict is not None and gate.verdict.kind in ("signal", "aborted"):
                self.on_epoch_end_verdict(gate.verdict)

        def on_epoch_end_verdict(self, verdict):
            if verdict.kind == "signal":
                raise Stopped(verdict.signum)
            raise RuntimeError("the search stopped this trial after an error of its own")

        def on_epoch_end(self, epoch, logs=None):
            metrics = {key: float(value) for key, value in (logs or {}).items()}
            last = bool(self.model.stop_training) or epoch + 1 >= self.params.get("epochs", epoch + 2)
            verdict = gate.epoch_end(epoch, metrics, last)
            if verdict is None:
                return
            if verdict.kind == "signal":
                raise Stopped(verdict.signum)
            if verdict.kind == "aborted":
                raise RuntimeError("the search stopped this trial after an error of its own")
            if not last:
                on_stopped(Verdict(verdict.kind, epoch))
            self.model.stop_training = True

    return _AtGate()
