"""The ranking task: the task itself, evaluation of ranked lists and the order check."""
