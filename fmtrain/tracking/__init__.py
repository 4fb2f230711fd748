"""The MLflow boundary for tracking: with ``fmtrain.registry``, the only code that imports mlflow.

- ``runs``: one training run (autolog, params, metrics, artifacts, the model);
- ``sweeps``: a parent run with nested children;
- ``store``: reading finished runs back for comparison;
- ``evaluation``: the test-set evaluation run of a logged or registered model.
"""
