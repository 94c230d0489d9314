"""Tasks: what differs between ranking and rating (queries, fit, evaluation, cells, report sections)."""
