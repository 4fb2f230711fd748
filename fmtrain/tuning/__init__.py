"""Tuning: the search space as data (``space``), a search's trials as rows (``trials``) and the
decisions Optuna makes (``study``: its sampler, its pruner, the study in a storage handed in).

May import ``learning`` and ``errors``; never tracking, execution or the workflows.
"""
