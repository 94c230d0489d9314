"""Fair tuning (``recbench tune``): every model gets the same budget of Optuna trials on
validation users only, and the best options are written as a ``--config`` file.

:mod:`~recbench.tuning.space` samples a model's search space into a trial,
:mod:`~recbench.tuning.budget` says when a study has had its budget,
:mod:`~recbench.tuning.study` keeps the studies (storage, lock, fingerprint, resume),
:mod:`~recbench.tuning.objective` is one trial (fit on the tuning users, score the
validation users), :mod:`~recbench.tuning.tuner` runs the studies,
:mod:`~recbench.tuning.tuned_config` writes ``tuned.toml`` and
:mod:`~recbench.tuning.report` the study report.
"""
