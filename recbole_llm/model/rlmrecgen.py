"""RLMRec-Gen: LightGCN whose masked nodes must reconstruct their profile text embeddings.

Reference:
    X. Ren, W. Wei, L. Xia, L. Su, S. Cheng, J. Wang, D. Yin, C. Huang. "Representation Learning
    with Large Language Models for Recommendation". WWW 2024. Official code: HKUDS/RLMRec,
    encoder/models/general_cf/lightgcn_gene.py (and NodeMask in models/aug_utils.py).
"""

import torch
from torch import nn

from recbole_llm.config_rules import check_value
from recbole_llm.errors import ConfigValueError
from recbole_llm.model.graph import split_users_items
from recbole_llm.model.rlmrec import ProfileMLP, RLMRecLightGCN, info_nce

MASK_SCOPES = ("batch", "graph")


class RLMRecGen(RLMRecLightGCN):
    """LightGCN (``FastLightGCN`` summing its layers, ``RLMRecLightGCN``) plus RLMRec's generative alignment.

    Every training step picks a fraction ``mask_ratio`` of nodes (at least one) and replaces their
    layer-0 embeddings with a learnable mask token (initialised to zeros, as the official
    ``NodeMask``) before propagation. An MLP maps the propagated embeddings of the masked nodes to
    the text space, and InfoNCE with temperature ``kd_temperature`` among the masked nodes makes
    each one closest to its own profile embedding (the official ``ssl_con_loss``). BPR is computed
    on the same masked propagation, as in the official code. Loss = BPR + reg + ``kd_weight`` *
    reconstruction, returned as the two parts so RecBole logs both. Inference never masks: scores
    are LightGCN's.

    Choices where paper and official code differ from this plugin, or are silent:

    - ``mask_scope``: ``batch`` (default) samples the masked nodes among the batch's distinct users,
      positive and negative items; ``graph`` samples them among all nodes, as the official code
      does. Padding ids are never masked.
    - Profiles: the text ``text_embeddings`` builds (an item's description; for a user, the
      descriptions of the user's training items), not LLM-generated profiles.
    - Backbone: the plugin's LightGCN with the official sum over layers (see ``RLMRecLightGCN``),
      without the official 20% edge dropout in training.
    - Regularisation: LightGCN's L2 on the batch's layer-0 ID embeddings, not every parameter.
    - Profile embeddings are centred and L2-normalised once (``register_profile_embeddings``).
    - The MLP is Linear(d, (h + d) // 2) -> LeakyReLU -> Linear(..., h) with Xavier weights, as the
      official code.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.mask_ratio = config["mask_ratio"]
        self.mask_scope = config["mask_scope"]
        check_value("mask_ratio", self.mask_ratio)
        if self.mask_scope not in MASK_SCOPES:
            raise ConfigValueError(f"mask_scope={self.mask_scope!r} is not one of {', '.join(MASK_SCOPES)}. "
                                   "Fix: pass --mask_scope=batch or --mask_scope=graph.")

        self.mask_token = nn.Parameter(torch.zeros(1, self.latent_dim))
        self.profile_decoder = ProfileMLP(self.latent_dim, self.text_size)

    def masked_nodes(self, interaction):
        """Node ids (users, then items offset by n_users) to mask for this batch, drawn with torch's RNG."""
        if self.mask_scope == "batch":
            candidates = torch.cat([
                interaction[self.USER_ID],
                interaction[self.ITEM_ID] + self.n_users,
                interaction[self.NEG_ITEM_ID] + self.n_users,
            ]).unique()
        else:
            candidates = torch.arange(1, self.n_users + self.n_items, device=self.device)
            candidates = candidates[candidates != self.n_users]  # item padding id 0
        count = max(int(len(candidates) * self.mask_ratio), 1)
        return candidates[torch.randperm(len(candidates), device=candidates.device)[:count]]

    def mask(self, ego_embeddings, nodes):
        """``ego_embeddings`` with the rows ``nodes`` replaced by the mask token."""
        is_masked = torch.zeros(len(ego_embeddings), 1, dtype=torch.bool, device=ego_embeddings.device)
        is_masked[nodes] = True
        return torch.where(is_masked, self.mask_token, ego_embeddings)

    def node_profiles(self, nodes):
        """Profile embeddings of node ids (users, then items offset by n_users)."""
        is_user = nodes < self.n_users
        profiles = self.item_profile_embedding.new_empty(len(nodes), self.item_profile_embedding.shape[1])
        profiles[is_user] = self.user_profile_embedding[nodes[is_user]]
        profiles[~is_user] = self.item_profile_embedding[nodes[~is_user] - self.n_users]
        return profiles

    def calculate_loss(self, interaction):
        self.restore_user_e, self.restore_item_e = None, None
        nodes = self.masked_nodes(interaction)
        ego_embeddings = self.mask(self.get_ego_embeddings(), nodes)
        all_embeddings = self.propagate(ego_embeddings)
        recommendation_loss = self.ranking_reg_loss(interaction, *split_users_items(all_embeddings, self.n_users, self.n_items))

        reconstruction_loss = info_nce(self.profile_decoder(all_embeddings[nodes]), self.node_profiles(nodes),
                                       temperature=self.kd_temperature)
        return recommendation_loss, self.kd_weight * reconstruction_loss
