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
from torch.autograd.function import once_differentiable

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
        if self.full_catalogue():
            logits = self.logits(user_n @ F.normalize(item_all_e[1:], dim=1).T)  # the padding item is no candidate
            return F.cross_entropy(logits, pos_item - 1)
        negatives = torch.randint(1, self.n_items, (self.n_negatives,), device=user_e.device)
        # 1 / tau scales the batch's user rows, not the (batch x negatives) logits; the item rows are normalised
        # before or after they are gathered, whichever is fewer rows (the same values: each row on its own).
        user_n = self.logits(user_n)
        if len(item_all_e) <= len(pos_item) + len(negatives):
            items_n = F.normalize(item_all_e, dim=1)
            pos_items, neg_items = items_n[pos_item], items_n[negatives]
        else:
            pos_items, neg_items = F.normalize(item_all_e[pos_item], dim=1), F.normalize(item_all_e[negatives], dim=1)
        pos_logit = (user_n * pos_items).sum(dim=1)
        neg_logits = user_n @ neg_items.T
        return SampledSoftmaxNLL.apply(pos_logit, neg_logits, *collisions(pos_item, negatives))


def collisions(pos_item, negatives):
    """(rows, columns) of the sampled negatives that are the row's own positive, without a (batch x negatives) pass:
    each positive is looked up among the sorted negatives."""
    sorted_negatives, order = torch.sort(negatives)
    low = torch.searchsorted(sorted_negatives, pos_item)
    counts = torch.searchsorted(sorted_negatives, pos_item, right=True) - low
    rows = torch.repeat_interleave(torch.arange(len(pos_item), device=pos_item.device), counts)
    first = torch.repeat_interleave(low, counts)
    within = torch.arange(len(rows), device=rows.device) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    return rows, order[first + within]


class SampledSoftmaxNLL(torch.autograd.Function):
    """Mean over the batch of -log softmax([pos, neg])[0], the entries (rows, columns) of ``neg`` left out.

    The same loss as ``F.cross_entropy`` on the positive's logit beside the negatives' with those
    entries at -inf, in a few passes over the (batch x negatives) logits instead of a dozen: the
    logits are exponentiated once, in place, kept for the backward, and scaled in place there.
    """

    @staticmethod
    def forward(ctx, pos, neg, rows, columns):
        ctx.dtype = neg.dtype
        dtype = torch.promote_types(neg.dtype, torch.float32)  # at least float32 under autocast, as cross_entropy
        pos, neg = pos.to(dtype), neg.to(dtype)
        top = torch.maximum(neg.amax(dim=1), pos)
        exp_neg = (neg - top.unsqueeze(1)).exp_()
        exp_neg[rows, columns] = 0
        exp_pos = (pos - top).exp()
        total = exp_neg.sum(dim=1) + exp_pos
        ctx.save_for_backward(exp_neg, exp_pos, total)
        return (total.log() + top - pos).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        exp_neg, exp_pos, total = ctx.saved_tensors
        scale = grad / (len(total) * total)
        grad_pos = exp_pos * scale - grad / len(total)
        return grad_pos.to(ctx.dtype), exp_neg.mul_(scale.unsqueeze(1)).to(ctx.dtype), None, None


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
