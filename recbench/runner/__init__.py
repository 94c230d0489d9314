"""Running a benchmark: the one runner (every task), seeding."""
