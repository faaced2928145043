"""RLMRec-Con: LightGCN whose final embeddings are contrastively aligned with profile text embeddings.

Reference:
    X. Ren, W. Wei, L. Xia, L. Su, S. Cheng, J. Wang, D. Yin, C. Huang. "Representation Learning
    with Large Language Models for Recommendation". WWW 2024. Official code: HKUDS/RLMRec,
    encoder/models/general_cf/lightgcn_plus.py.
"""

import torch

from recbole_llm.model.rlmrec import ProfileMLP, RLMRecLightGCN, info_nce


class RLMRecCon(RLMRecLightGCN):
    """LightGCN (``FastLightGCN`` summing its layers, ``RLMRecLightGCN``) plus RLMRec's contrastive alignment.

    An MLP maps each frozen profile embedding s (the language model's text embedding) to the CF
    dimension, and InfoNCE with temperature ``kd_temperature`` pulls the final LightGCN embedding
    e of every user, positive item and negative item of the batch towards its own MLP(s) and away
    from the others'. Loss = BPR + reg + ``kd_weight`` * (L_user + L_pos + L_neg), returned as the
    two parts (LightGCN's, alignment) so RecBole logs both. Scores are LightGCN's.

    As in the official code: cosine similarities (both sides L2-normalised); a user's negatives
    are the profiles of all users, an item's are those of the batch's positive (resp. negative)
    items; each of the three InfoNCE terms is averaged over the batch; the MLP is
    Linear(h, (h + d) // 2) -> LeakyReLU -> Linear(..., d) with Xavier weights.

    Choices where paper and official code differ from this plugin, or are silent:

    - Profiles: the official code embeds LLM-generated user/item profiles; here the profile is the
      text ``text_embeddings`` builds (an item's description; for a user, the descriptions of the
      user's training items), embedded by the configured backbone (mean-pooled hidden states).
    - Backbone: the plugin's LightGCN with the official sum over layers (see ``RLMRecLightGCN``),
      without the official 20% edge dropout in training (``keep_rate: 0.8``).
    - Regularisation: LightGCN's L2 on the batch's layer-0 ID embeddings (``reg_weight``); the
      official code penalises every parameter, the MLP included.
    - The padding user (id 0) is not among the user negatives.
    - Profile embeddings are centred and L2-normalised once (``register_profile_embeddings``).
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.profile_mlp = ProfileMLP(self.text_size, self.latent_dim)

    def calculate_loss(self, interaction):
        self.restore_user_e, self.restore_item_e = None, None
        user_all_embeddings, item_all_embeddings = self.forward()
        recommendation_loss = self.ranking_reg_loss(interaction, user_all_embeddings, item_all_embeddings)

        user = interaction[self.USER_ID]
        pos_item = interaction[self.ITEM_ID]
        neg_item = interaction[self.NEG_ITEM_ID]
        user_profiles = self.profile_mlp(self.user_profile_embedding[1:])
        # The MLP runs once per distinct item: it costs as much as the propagation otherwise.
        items, rows = torch.cat([pos_item, neg_item]).unique(return_inverse=True)
        pos_profiles, neg_profiles = self.profile_mlp(self.item_profile_embedding[items])[rows].split(len(pos_item))
        alignment_loss = (
            info_nce(user_all_embeddings[user], user_profiles[user - 1], user_profiles, self.kd_temperature)
            + info_nce(item_all_embeddings[pos_item], pos_profiles, temperature=self.kd_temperature)
            + info_nce(item_all_embeddings[neg_item], neg_profiles, temperature=self.kd_temperature)
        )
        return recommendation_loss, self.kd_weight * alignment_loss
