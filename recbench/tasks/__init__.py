"""Tasks: what differs between ranking and rating (planning, split, fit, evaluation, cell
fields); :mod:`recbench.tasks.base` says what a task supplies, :mod:`recbench.tasks.catalog`
picks a run's task."""
