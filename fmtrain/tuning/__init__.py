"""Tuning: the search space as data (``space``), a search's trials as rows (``trials``), the
verdicts that stop a trial between epochs (``verdicts``) and the Optuna/Ray Tune engine
(``engine``).

May import ``execution``, ``learning`` and ``errors``; never tracking or the workflows.
"""
