"""System metrics: the CPU, memory, disk, network (and NVIDIA GPU) curves MLflow records
beside a run's own metrics, as ``system/...`` (``system/NODE/...`` on a Ray worker).

MLflow samples them in a thread of the run's process (psutil; pynvml, the ``gpu`` extra, for
NVIDIA GPUs) every ``system_metrics`` seconds, and logs each sample as one step.
"""

from __future__ import annotations

import socket

import mlflow


def start_arguments(seconds: float) -> dict:
    """``mlflow.start_run``'s arguments that sample every ``seconds`` (0: no system metrics)."""
    if not seconds:
        return {"log_system_metrics": False}
    # MLflow reads the interval when the run starts; it is the same for every run of a process.
    mlflow.set_system_metrics_sampling_interval(seconds)
    return {"log_system_metrics": True}


def name_node(node: str | None = None) -> None:
    """Prefix the system metrics of the runs this process starts with its node (the host name
    unless given): a Ray worker's curves say which machine they measure."""
    mlflow.system_metrics.set_system_metrics_node_id(node or socket.gethostname())
