"""Running a benchmark: plans, the one runner, seeding."""
