"""The ranking task: evaluation of ranked lists and the order check."""
