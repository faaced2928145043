"""The GLLM item head: the LM's hidden state at an output slot -> one logit per catalogue item.

From GLTA's Graph-Language Logits Matching: every output is exactly one real item (no free text,
no hallucinated item), and full ranking is one matrix product. GAL-Rec's recommendation loss L0
uses the same head.

Modes (config key ``gllm_head``):

- ``linear``: a fresh ``Linear(hidden, n_items)``.
- ``item_tokens``: the same Linear, its weight initialised from the projected item tokens
  P_i(E_i) when ``init_from_item_tokens`` is called, so that training starts from logits =
  hidden · item token ("logits matching") and may move away from it.
- ``tied``: logits = hidden · P_i(E_i)ᵀ + bias at every step; the item projector is the head.

Input normalisation (config key ``head_norm``):

- ``none``: the LM's last hidden state as it is.
- ``batch``: standardise each hidden dimension first (``BatchNorm1d`` without affine: batch
  statistics in training, running ones at evaluation). A frozen decoder's last hidden states are
  dominated by a few "massive activation" dimensions shared by every prompt: with SmolLM2 cut to
  4 layers, three dimensions hold most of the last state's squared norm, and unrelated sentences
  have nearly the same last state (results/probes.md, "Massive activations"). Through a head
  those dimensions give every user the same logits, which training must first unlearn: GAL-Rec's
  L0 starts above the loss of a uniform guess (benchmarks/notes/amazon-beauty.md, "GLLM head
  input"). Standardising removes the shared part and leaves the per-prompt variation. It lowers
  the first epoch's loss but did not improve GAL-Rec's ranking on ml-100k, so ``none`` is the
  default (benchmarks/notes/ml-100k.md, "GAL-Rec").
"""

import torch
from torch import nn

from recbole_llm.errors import ConfigValueError

HEAD_MODES = ("linear", "item_tokens", "tied")
HEAD_NORMS = ("none", "batch")


class GLLMHead(nn.Module):
    def __init__(self, hidden_size, n_items, mode="item_tokens", norm="none"):
        super().__init__()
        if mode not in HEAD_MODES:
            raise ConfigValueError(f"gllm_head={mode!r} is not a GLLM head. Fix: set gllm_head to one of {', '.join(HEAD_MODES)}.")
        if norm not in HEAD_NORMS:
            raise ConfigValueError(f"head_norm={norm!r} is not a head normalisation. Fix: set head_norm to one of "
                                   f"{', '.join(HEAD_NORMS)}.")
        self.mode = mode
        self.norm = nn.BatchNorm1d(hidden_size, affine=False) if norm == "batch" else None
        self.linear = nn.Linear(hidden_size, n_items) if mode != "tied" else None
        self.bias = nn.Parameter(torch.zeros(n_items)) if mode == "tied" else None

    @torch.no_grad()
    def init_from_item_tokens(self, item_tokens):
        """Copy the projected item tokens [n_items, hidden] into the Linear's weight (``item_tokens`` mode)."""
        if self.mode == "item_tokens":
            self.linear.weight.copy_(item_tokens)
            self.linear.bias.zero_()

    def forward(self, hidden, item_tokens=None):
        """``hidden`` [..., hidden] -> logits [..., n_items]; ``item_tokens`` is required when tied."""
        if self.norm is not None:
            hidden = self.norm(hidden.reshape(-1, hidden.shape[-1])).view(hidden.shape)
        if self.mode == "tied":
            return hidden @ item_tokens.t() + self.bias
        return self.linear(hidden)
