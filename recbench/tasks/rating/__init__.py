"""The rating task: predicting held-out ratings."""
