"""The chapter's learning code: settings and named configurations (``configs``), the data and
its split (``data``), how batches reach Keras (``batches``), the model builders (``model``),
training with its save/reload checks (``training``), scores as typed records (``scores``), the
served model's input rules (``served_input``, numpy alone: each logged model carries a copy),
the images callers hand a trained model and pictures made into them (``images``), the resumable state
of a training (``states``: the data; ``resume``: the callbacks that save it and continue from it)
and the Keras backend (``backend``).

Values in, values out: no MLflow, no figures, no files beyond a working folder it is given.
Imports only ``fmtrain.errors`` and ``fmtrain.internals`` (the private names of Keras it needs).
"""
