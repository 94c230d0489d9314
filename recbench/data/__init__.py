"""Data: interactions, preprocessing, splits, protocols' queries, downloads, the derived-data cache."""
