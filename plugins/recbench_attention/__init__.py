"""Self-attention sequence models: SASRec (causal, with a key/value-cached serving cell)
and BERT4Rec (bidirectional, cloze-trained)."""

from __future__ import annotations

from recbench.plugin import hookimpl

#: The plugin API these hooks are written for (see recbench.plugin).
RECBENCH_PLUGIN_API = 2


@hookimpl
def register_models(register):
    from recbench_attention.bert4rec import BERT4RecModel
    from recbench_attention.sasrec import SASRecModel

    register(SASRecModel)
    register(BERT4RecModel)
