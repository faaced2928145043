"""Gradient accumulation for RecBole's training loop, as an optimizer wrapper.

RecBole's ``Trainer._train_epoch`` calls ``zero_grad``, ``backward`` and ``step`` once per batch and
has no accumulation. Wrapping the optimizer keeps that loop as it is: with
``gradient_accumulation_steps: N`` the wrapper lets gradients of N batches add up (``zero_grad``
does nothing in between), then divides them by N and takes one real step. LLM-backed models use it
to train with an effective batch N times what fits in memory.

A remainder of fewer than N batches at the end of an epoch is carried into the next epoch's first
step rather than dropped. Under DDP every batch still all-reduces its gradients (correct, not the
cheapest: no ``no_sync``).
"""

import torch

from recbole_llm.config_rules import check_value
from recbole_llm.helpers import option


class GradientAccumulation:
    """Wrap ``optimizer`` so that one real step is taken every ``steps`` calls of ``step``."""

    def __init__(self, optimizer, steps):
        self.optimizer, self.steps, self.calls = optimizer, steps, 0

    def zero_grad(self, set_to_none=True):
        if self.calls % self.steps == 0:
            self.optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure=None):
        self.calls += 1
        if self.calls % self.steps:
            return None
        for group in self.optimizer.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    param.grad.div_(self.steps)
        return self.optimizer.step(closure)

    def state_dict(self):
        return {"optimizer": self.optimizer.state_dict(), "calls": self.calls}

    def load_state_dict(self, state):
        if "optimizer" in state and "calls" in state:
            self.optimizer.load_state_dict(state["optimizer"])
            self.calls = state["calls"]
        else:  # a checkpoint written without accumulation
            self.optimizer.load_state_dict(state)

    def __getattr__(self, name):  # param_groups, state, ... as the wrapped optimizer has them
        return getattr(self.optimizer, name)


def accumulate(optimizer, config):
    """``optimizer`` itself, or wrapped when ``gradient_accumulation_steps`` > 1."""
    steps = option(config, "gradient_accumulation_steps", 1)
    check_value("gradient_accumulation_steps", steps)
    return optimizer if steps == 1 else GradientAccumulation(optimizer, steps)
