"""HCCF+: HCCF whose layer-0 node features are enriched with frozen language-model text embeddings.

The text-enhanced HCCF baseline named by the GLTA and GAL-Rec papers (neither gives details): HCCF
(Xia et al., SIGIR 2022; see ``hccf.py``) in which the ID embeddings of users and items are fused
with projected text embeddings of item descriptions and of users' item-description
concatenations (``TextFusion``, shared with LightGCN+) before anything else sees them.

Choices where the spec is silent (beside those of ``hccf.py`` and ``text_fusion.py``):

- The fused embeddings are layer 0 everywhere: the local view propagates them, and the learnable
  hypergraphs are built from them (H_u = E_u^(0) W_u), so text shapes both views.
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
