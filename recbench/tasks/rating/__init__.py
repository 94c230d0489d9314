"""The rating task: the task itself and the rating protocol (predicting held-out ratings)."""
