"""HCCF+: HCCF whose layer-0 node features are enriched with frozen language-model text embeddings.

The text-enhanced HCCF baseline named by the GLTA and GAL-Rec papers (neither gives details): HCCF
(Xia et al., SIGIR 2022; see ``hccf.py``) in which the ID embeddings of users and items are fused
with projected text embeddings of item descriptions and of users' item-description
concatenations (``TextFusion``, shared with LightGCN+) before anything else sees them.

Choices where the spec is silent (beside those of ``hccf.py`` and ``text_fusion.py``):

- The fused embeddings are layer 0 of both views: the local view propagates them and the global
  view aggregates them. The learnable hypergraphs, though, are built from the ID embeddings alone
  (H_u = E_u^ID W_u, in ``HCCF.forward``). Built from the fused ones, the text's shared
  directions entered H and summed coherently over all nodes in H LeakyReLU(H^T E), an
  un-normalised sum, which grows with the node count. On ml-1m (6k users), Adam's first steps
  moved the zero-initialised projection enough that scores exploded and the model did not train;
  with the hypergraph built from the IDs it trains normally (benchmarks/notes/ml-1m.md, "The papers'
  baselines", HCCF+, made by ``benchmarks/probes/hccfplus_hypergraph.py``).
- The projection and fusion weights fall under HCCF's L2 regularisation of all parameters; the
  frozen text vectors are buffers, not parameters, and are not in the checkpoint.
"""

from recbole_llm.model.hccf import HCCF
from recbole_llm.model.text_fusion import TextFusion


class HCCFPlus(HCCF):
    """HCCF on text-fused layer-0 embeddings (CLI name ``HCCF+``; ``text_proj``, ``text_fusion``)."""

    uses_item_text = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.text_fusion = TextFusion(config, dataset, self.embedding_size)

    def get_ego_embeddings(self):
        return self.text_fusion(self.user_embedding.weight, self.item_embedding.weight)
