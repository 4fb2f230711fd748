"""fmtrain: the Fashion-MNIST chapter's Keras experiments as tracked, comparable MLflow runs."""

__version__ = "0.1.0"
