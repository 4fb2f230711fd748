"""The MLflow boundary: the only code that imports ``mlflow``.

- ``names``: tags, experiment, model and artifact names (imports nothing);
- ``store``: opening the tracking store, "not found", reading one run;
- ``runs``: run lifecycle: start or resume, end with a status, errors as tags;
- ``logged``: params, metrics, artifacts, figures and descriptions;
- ``logged_models``: a run's final model and best checkpoint, self-contained, logged once;
- ``datasets``: the data a run used, as dataset inputs with digests;
- ``monitoring``: system metrics (the machine's use) beside a run's own;
- ``served_model``: the code MLflow copies into each model (models from code): no fmtrain;
- ``serving``: the loader of models logged by fmtrain 0.2;
- ``evaluation``: a model evaluated on the test images by ``mlflow.models.evaluate``;
- ``states``: a run's resumable state, its artifacts under ``resume/``, and what a resume reads;
- ``queries``: typed records read back from the store, for comparison;
- ``registry``: register and describe models, move aliases, resolve and load models;
- ``ui``: where the MLflow UI shows a run, and the command that serves a local store.

May import ``learning``, ``analysis``' records and ``errors``; never the workflows or the
command line.
"""
