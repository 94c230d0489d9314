"""Recurrent sequence models: LSTM, GRU4Rec, multiplicative LSTM."""

from __future__ import annotations

from recbench import hookimpl


@hookimpl
def register_models(register):
    from recbench_rnn.gru4rec import GRU4RecModel
    from recbench_rnn.lstm import LSTMModel
    from recbench_rnn.mlstm import MLSTMModel

    register(LSTMModel)
    register(GRU4RecModel)
    register(MLSTMModel)
