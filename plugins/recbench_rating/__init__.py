"""Rating prediction (the rating track): a global-mean baseline, matrix factorisation, a
dense network over user and item embeddings, and an LSTM over each user's rated items."""

from __future__ import annotations

from recbench.plugin import hookimpl

#: The plugin API these hooks are written for (see recbench.plugin).
RECBENCH_PLUGIN_API = 2


@hookimpl
def register_models(register):
    from recbench_rating.dense import DenseRating
    from recbench_rating.lstm_rating import LSTMRating
    from recbench_rating.mean import GlobalMean
    from recbench_rating.mf import MatrixFactorization

    register(GlobalMean)
    register(MatrixFactorization)
    register(DenseRating)
    register(LSTMRating)
