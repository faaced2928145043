"""The ranking loss of the plugin's LightGCN family: BPR over one negative, or a softmax over many.

``graph_loss`` picks it, for ``FastLightGCN`` and every model built on it:

- ``bpr``: RecBole's ``BPRLoss`` on dot-product scores against the one negative RecBole's sampler
  draws per interaction (LightGCN's paper and RecBole's ``LightGCN``).
- ``softmax``: InfoNCE. The user's cosine similarity with its positive item and with
  ``softmax_negatives`` items drawn uniformly from the catalogue (one draw shared by the batch),
  each divided by the temperature ``softmax_tau``, then cross-entropy on the positive. With
  ``softmax_negatives: 0`` every item of the catalogue is a candidate (the full softmax).

Why a softmax: LightGCN trained with InfoNCE over a few hundred negatives ranks about 15% better
than with BPR in published reproductions, and AlphaRec (Sheng et al., ICLR 2025), the text-aware
graph model this plugin builds on, trains that way (256 negatives, tau 0.15). Cosine rather than
the dot product is AlphaRec's choice too: with a temperature, unnormalised dot products let the
norms grow without bound. A model trained with it also scores with it (``cosine``), so training
and ranking use one geometry.

Choices where the sources are silent: a sampled negative that is the row's own positive is masked
out (it would push the positive against itself); the padding item 0 is never a candidate.
"""

import torch
import torch.nn.functional as F
from recbole.model.loss import BPRLoss
from torch import nn

from recbole_llm.errors import ConfigValueError

GRAPH_LOSSES = ("bpr", "softmax")


class BPR(nn.Module):
    """RecBole's ``BPRLoss`` on dot-product scores of each user with its positive and its sampled negative."""

    cosine = False

    def __init__(self):
        super().__init__()
        self.bpr = BPRLoss()

    def logits(self, scores):
        """The model's ranking scores from its dot products: the dot products themselves."""
        return scores

    def forward(self, user_e, pos_item, neg_item, item_all_e):
        pos_scores = torch.mul(user_e, item_all_e[pos_item]).sum(dim=1)
        neg_scores = torch.mul(user_e, item_all_e[neg_item]).sum(dim=1)
        return self.bpr(pos_scores, neg_scores)


class SoftmaxLoss(nn.Module):
    """InfoNCE of (user, positive item) pairs against sampled or all items, cosine similarity over tau.

    Args:
        n_items (int): RecBole's item count, the padding id 0 included.
        n_negatives (int): items sampled per batch; 0, or at least the catalogue, means all items.
        tau (float): the temperature.
    """

    cosine = True

    def __init__(self, n_items, n_negatives, tau):
        super().__init__()
        self.n_items = n_items
        self.n_negatives = n_negatives
        self.tau = tau

    def logits(self, scores):
        """The model's ranking scores from its dot products of unit-norm embeddings (cosines): cosine / tau,
        the logits it trains with, so a score fused with other logits keeps its trained scale."""
        return scores / self.tau

    def full_catalogue(self):
        return self.n_negatives <= 0 or self.n_negatives >= self.n_items - 1

    def forward(self, user_e, pos_item, neg_item, item_all_e):
        """Mean loss over the batch.

        Args:
            user_e: (B, d) final user embeddings of the batch.
            pos_item: (B,) the positive items' ids.
            neg_item: RecBole's sampled negatives, unused: the softmax draws its own, many.
            item_all_e: (n_items, d) final embeddings of every item.
        """
        user_n = F.normalize(user_e, dim=1)
        items_n = F.normalize(item_all_e, dim=1)
        if self.full_catalogue():
            logits = self.logits(user_n @ items_n[1:].T)  # the padding item is no candidate
            return F.cross_entropy(logits, pos_item - 1)
        negatives = torch.randint(1, self.n_items, (self.n_negatives,), device=user_e.device)
        pos_logit = self.logits((user_n * items_n[pos_item]).sum(dim=1, keepdim=True))
        neg_logits = self.logits(user_n @ items_n[negatives].T)
        neg_logits = neg_logits.masked_fill(negatives.unsqueeze(0) == pos_item.unsqueeze(1), float("-inf"))
        logits = torch.cat([pos_logit, neg_logits], dim=1)
        return F.cross_entropy(logits, torch.zeros_like(pos_item))


def ranking_loss(config, n_items):
    """The loss module ``graph_loss`` names, ``BPR`` or ``SoftmaxLoss``.

    Both are called as ``loss(user_e, pos_item, neg_item, item_all_e)``; ``loss.cosine`` says
    whether the model should score by cosine similarity, and ``loss.logits`` turns its dot products
    into its ranking scores.
    """
    name = config["graph_loss"] or "bpr"
    if name == "bpr":
        return BPR()
    if name == "softmax":
        return SoftmaxLoss(n_items, config["softmax_negatives"], config["softmax_tau"])
    raise ConfigValueError(
        f"graph_loss={name!r} is not supported. Fix: set graph_loss to one of {', '.join(GRAPH_LOSSES)}."
    )
