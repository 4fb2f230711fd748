"""fmtrain: the Fashion-MNIST chapter's Keras experiments as tracked, comparable MLflow runs.

The package's folders are its layers, each importing only the ones below it (checked by
import-linter, see ``[tool.importlinter]`` in pyproject.toml):

- ``cli``: the command line (commands, options, what is printed, exit statuses);
- ``workflows``: what each command does, in order;
- ``tuning``: the search space, trials, the Optuna/Ray Tune engine;
- ``execution``: where jobs run (this process or Ray) and how signals stop them;
- ``tracking``: the MLflow boundary, the only code importing mlflow;
- ``analysis``: comparison, intervals over seeds, figures, descriptions;
- ``learning``: settings, data, model, training and test metrics; values in, values out;
- ``errors``: the exceptions every layer shares; ``internals``: other libraries' private names
  that fmtrain needs, in one guarded module.
"""

__version__ = "0.2.0"
