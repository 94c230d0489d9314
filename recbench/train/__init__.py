"""Training: the shared loop for neural models, and negative sampling."""
