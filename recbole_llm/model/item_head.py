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
"""

import torch
from torch import nn

from recbole_llm.errors import ConfigValueError

HEAD_MODES = ("linear", "item_tokens", "tied")


class GLLMHead(nn.Module):
    def __init__(self, hidden_size, n_items, mode="item_tokens"):
        super().__init__()
        if mode not in HEAD_MODES:
            raise ConfigValueError(f"gllm_head={mode!r} is not a GLLM head. Fix: set gllm_head to one of {', '.join(HEAD_MODES)}.")
        self.mode = mode
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
        if self.mode == "tied":
            return hidden @ item_tokens.t() + self.bias
        return self.linear(hidden)
