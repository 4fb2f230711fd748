"""Where jobs run and how they stop: in this process or as Ray tasks (``engines``), and the
handling of SIGINT, SIGTERM and SIGHUP (``signals``).

Knows nothing of MLflow or of what a job does; may import ``errors`` only.
"""
