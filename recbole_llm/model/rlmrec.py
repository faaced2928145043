"""Pieces RLMRec-Con and RLMRec-Gen share: their LightGCN, the profile embeddings, the MLP, InfoNCE.

X. Ren, W. Wei, L. Xia, L. Su, S. Cheng, J. Wang, D. Yin, C. Huang. "Representation Learning with
Large Language Models for Recommendation". WWW 2024. Official code: HKUDS/RLMRec
(encoder/models/general_cf/lightgcn_plus.py, lightgcn_gene.py, loss_utils.py).
"""

import torch
import torch.nn.functional as F
from torch import nn

from recbole_llm.data.text_embedding import text_embeddings
from recbole_llm.config_rules import check_value
from recbole_llm.model.fastlightgcn import FastLightGCN
from recbole_llm.model.graph import lightgcn_propagate, split_users_items
from recbole_llm.model.text_fusion import centred_unit_rows


def register_profile_embeddings(model, config, dataset):
    """Frozen text embeddings of user and item profiles as non-persistent buffers of ``model``.

    ``user_profile_embedding`` (n_users, h) and ``item_profile_embedding`` (n_items, h): recomputed
    from the on-disk cache when a checkpoint is loaded, so they never enter a state_dict. Centred
    and L2-normalised as ``TextFusion`` does for LightGCN+/HCCF+: mean-pooled decoder states share
    one dominant direction, under which every profile looks alike to a cosine InfoNCE; centring
    removes it (benchmarks/notes/ml-100k.md, "Figures behind the code's choices"). The official
    code's API embeddings need no such step.
    """
    user_text, item_text = text_embeddings(dataset, config)
    model.register_buffer("user_profile_embedding", centred_unit_rows(user_text).to(model.device), persistent=False)
    model.register_buffer("item_profile_embedding", centred_unit_rows(item_text).to(model.device), persistent=False)
    return user_text.shape[1]


def check_alignment_config(config):
    """``kd_weight`` >= 0 (0 turns the alignment off) and ``kd_temperature`` > 0, else a ConfigValueError."""
    check_value("kd_weight", config["kd_weight"])
    check_value("kd_temperature", config["kd_temperature"])


class ProfileMLP(nn.Sequential):
    """Linear -> LeakyReLU -> Linear with hidden size (in + out) // 2 and Xavier weights, as the official code."""

    def __init__(self, in_size, out_size):
        hidden = (in_size + out_size) // 2
        super().__init__(nn.Linear(in_size, hidden), nn.LeakyReLU(), nn.Linear(hidden, out_size))
        for layer in (self[0], self[2]):
            nn.init.xavier_uniform_(layer.weight)


def info_nce(anchor, positive, candidates=None, temperature=1.0):
    """InfoNCE between L2-normalised rows, averaged over the rows of ``anchor``.

    Row i's positive is ``positive[i]``; its denominator sums over every row of ``candidates``
    (default: ``positive``, i.e. in-batch negatives, the positive included). This is the official
    code's ``cal_infonce_loss`` divided by the batch size and its ``ssl_con_loss``, written with
    ``logsumexp`` (the same value without their 1e-8 terms, and without overflow).
    """
    candidates = positive if candidates is None else candidates
    anchor, positive, candidates = (F.normalize(x, dim=-1) for x in (anchor, positive, candidates))
    positive_logit = (anchor * positive).sum(-1) / temperature
    return (torch.logsumexp(anchor @ candidates.T / temperature, dim=-1) - positive_logit).mean()


class RLMRecLightGCN(FastLightGCN):
    """The official code's LightGCN: final embedding = the SUM over layers 0..L, not the mean.

    The sum is (L + 1) x the mean, so rankings are LightGCN's, but the scale sets the balance
    between BPR and the scale-free (cosine) alignment losses. With the official kd_weight and the
    mean, the alignment gradient outweighs BPR's and BPR does not learn; with the sum it does
    (benchmarks/notes/ml-100k.md, "Figures behind the code's choices"). Also reads the alignment
    keys and profile texts.
    """

    uses_item_text = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        check_alignment_config(config)
        self.kd_weight = config["kd_weight"]
        self.kd_temperature = config["kd_temperature"]
        self.text_size = register_profile_embeddings(self, config, dataset)

    def propagate(self, ego_embeddings):
        """Final embeddings of all nodes from layer-0 ``ego_embeddings``: the sum over layers."""
        return (self.n_layers + 1) * lightgcn_propagate(self.norm_adj_matrix, ego_embeddings, self.n_layers)

    def forward(self):
        return split_users_items(self.propagate(self.get_ego_embeddings()), self.n_users, self.n_items)
