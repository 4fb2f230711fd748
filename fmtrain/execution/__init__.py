"""Where jobs run and how they stop: in this process or as Ray tasks (``engine``, Ray started
or joined by ``raystart``), and the handling of SIGINT, SIGTERM and SIGHUP (``signals``).

Knows nothing of MLflow or of what a job does (the caller hands in what each worker sets up);
may import ``errors`` and ``internals`` only.
"""
