"""Recurrent sequence models: LSTM, GRU4Rec, multiplicative LSTM, Mixture of Cosines (a GRU
over item2vec vectors), an LSTM/GRU with a full-softmax output layer (optionally tied to
the input embeddings)."""

from __future__ import annotations

from recbench.plugin import hookimpl

#: The plugin API these hooks are written for (see recbench.plugin).
RECBENCH_PLUGIN_API = 2


@hookimpl
def register_models(register):
    from recbench_rnn.gru4rec import GRU4RecModel
    from recbench_rnn.lstm import LSTMModel
    from recbench_rnn.mlstm import MLSTMModel
    from recbench_rnn.moc import MoCModel
    from recbench_rnn.rnn_cce import RNNCCEModel

    register(LSTMModel)
    register(GRU4RecModel)
    register(MLSTMModel)
    register(MoCModel)
    register(RNNCCEModel)
