"""Statistics: metric summaries, paired significance tests."""
