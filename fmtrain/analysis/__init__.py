"""Analysis and reporting: comparing runs (``comparison``), bootstrap intervals over seeds
(``intervals``), figures (``figures``) and the descriptions the MLflow UI shows
(``descriptions``).

Works on plain values and typed records; may import ``learning`` and ``errors``, never tracking.
"""
