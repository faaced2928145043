"""LightGCN+: LightGCN whose layer-0 node features are enriched with frozen text embeddings.

Reference:
    Xiangnan He et al. "LightGCN: Simplifying and Powering Graph Convolution Network for
    Recommendation." in SIGIR 2020; the text-enhanced variant is the "LightGCN+" baseline of the
    GLTA and GAL-Rec papers (see /work/shared/SPEC.md, "Baselines").
"""

import torch

from recbole_llm.model.fastlightgcn import FastLightGCN
from recbole_llm.model.text_fusion import TextFusion


class LightGCNPlus(FastLightGCN):
    """``FastLightGCN`` with ``TextFusion`` applied to the layer-0 embeddings before propagation.

    Items carry the embedding of their description, users that of their training items'
    descriptions (``text_embeddings``), frozen; ``TextFusion`` projects them (``text_proj``:
    linear | mlp) and fuses them with the ID embeddings (``text_fusion``: add | concat). Scores,
    BPR and full ranking are LightGCN's on the fused graph.

    Choices where the papers are silent:

    - The L2 term stays on the batch's layer-0 ID embeddings, as in LightGCN; the projection and
      fusion layers are regularised only through the optimiser's ``weight_decay``.
    - Text enters at layer 0 only, so it is propagated like any node feature; the final
      embedding is the mean over layers, as in LightGCN.
    - Text preprocessing, projection shapes and initialisation are ``TextFusion``'s (see
      ``text_fusion.py``), shared with HCCF+.
    """

    uses_item_text = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.text_fusion = TextFusion(config, dataset, self.latent_dim)

    def get_ego_embeddings(self):
        """ID embeddings fused with projected text, users then items: (n_users + n_items, embedding_size)."""
        user_ego, item_ego = self.text_fusion(self.user_embedding.weight, self.item_embedding.weight)
        return torch.cat([user_ego, item_ego], dim=0)
