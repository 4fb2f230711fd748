"""Tasks on a lost node: where each running task is, and which of them stand on a node Ray marked
dead.

Ray runs a task again when its worker dies, but of a task whose node stopped answering (a cut
cable, a machine powered off) it learns that only once the connection to that worker breaks:
minutes later, or when the node answers again. Ray's control service marks such a node dead
within seconds (its health checks, set on the head: ``RAY_health_check_period_ms``,
``RAY_health_check_timeout_ms``, ``RAY_health_check_failure_threshold``). So on a cluster each
task says which node it runs on as it starts (through a queue), and the engine asks which running
tasks stand on a dead node: it cancels each (Ray never runs a cancelled task again) and submits
its job anew, which then continues the run its first attempt left (jobs are idempotent).
"""

from __future__ import annotations

import time

# How often Ray is asked which nodes live (one request to its control service).
CHECK_SECONDS = 1.0


class NodeWatch:
    """The node of each running task (by a key of the engine's), and the dead ones among them."""

    def __init__(self, ray):
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray = ray
        # The queue lives on this process's node, which stays as long as the engine does (placed
        # anywhere else, it would die with a lost node, and the sweep with it).
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
        self.node_of: dict[object, str] = {}
        self._checked = 0.0

    def lost(self, keys) -> list:
        """The keys among ``keys`` whose task runs on a node that Ray has marked dead."""
        if time.monotonic() - self._checked < CHECK_SECONDS:
            return []
        self._checked = time.monotonic()
        waiting = self.queue.size()
        for key, node in self.queue.get_nowait_batch(waiting) if waiting else []:
            self.node_of[key] = node
        dead = {node["NodeID"] for node in self.ray.nodes() if not node["Alive"]}
        return [key for key in keys if self.node_of.get(key) in dead]

    def forget(self, key) -> None:
        self.node_of.pop(key, None)

    def close(self) -> None:
        self.queue.shutdown(force=True)


def say_where(queue, key) -> None:
    """In a task: tell the engine's watch which node runs the task ``key``."""
    import ray

    queue.put((key, ray.get_runtime_context().get_node_id()))
