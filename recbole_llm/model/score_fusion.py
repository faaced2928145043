"""Score fusion: how GLTA's and GAL-Rec's final scores combine stage 1's ranking with the LM's logits.

One config key, ``score_fusion``, chooses one of three behaviours; each is a small module holding its
own state, and the models and the trainer ask it instead of branching on the key:

- ``none`` (the papers'): the GLLM head's logits are the scores.
- ``residual`` (the default): ``scale · e_u·E_iᵀ + gate · LM logits``, with e_u, E_i the frozen
  stage-1 embeddings and the learned gate starting at 0, so the language-model stage starts exactly
  at stage 1's ranking and can only add to it. The last stage validates once before its first
  epoch, so stage 1's ranking is a candidate for the best checkpoint.
- ``validated``: the language-model stage trains the LM head alone (the papers' objective); its best
  checkpoint is then fused as ``e_u·E_iᵀ / σ_graph + w · LM logits / σ_LM``, with ``w`` picked from
  ``FUSION_WEIGHTS`` on the validation split (``w = 0`` is stage 1 itself), as any other
  hyper-parameter is (``GraphStageTrainer.choose_fusion_weight``).
"""

import torch
from torch import nn

from recbole_llm.errors import ConfigValueError

# The weights of the LM's standardised logits that ``validated`` tries on validation.
FUSION_WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5)


class ScoreFusion(nn.Module):
    """``none``: the LM head's logits are the final scores; the base of the other fusions."""

    name = "none"
    validates_stage1_first = False  # the last stage validates stage 1's ranking before its first epoch
    chosen_on_validation = False  # the trainer picks the fusion's weight on validation after the last stage
    masks_training_history = False  # training scores hide the prompt's history items (the graph ranks them on top)

    def lm_alone(self, training=False):
        """Whether the final scores are the LM head's alone."""
        return True

    @property
    def needs_lm(self):
        """Whether scoring runs the language model at all."""
        return True

    def fuse(self, graph_scores, lm_logits, training=False):
        """The final scores from ``lm_logits``; ``graph_scores()`` gives stage 1's, called only when read."""
        return lm_logits

    def record(self):
        """The fusion's weights for the run's record (None without any)."""
        return None


class ResidualFusion(ScoreFusion):
    """``residual``: ``scale · stage-1 score + gate · LM logits``, both learned, the gate from 0."""

    name = "residual"
    validates_stage1_first = True
    masks_training_history = True

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.gate = nn.Parameter(torch.zeros(()))

    def lm_alone(self, training=False):
        return False

    def fuse(self, graph_scores, lm_logits, training=False):
        return self.scale * graph_scores() + self.gate * lm_logits

    def record(self):
        return {"scale": self.scale.item(), "gate": self.gate.item()}


class ValidatedFusion(ScoreFusion):
    """``validated``: the LM alone while it trains and validates; then ``choose`` sets the weight found best
    on validation, kept in buffers so the best checkpoint carries it."""

    name = "validated"
    chosen_on_validation = True
    masks_training_history = True

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("gate", torch.zeros(()))
        self.register_buffer("weight", torch.zeros(()))
        self.register_buffer("chosen", torch.zeros((), dtype=torch.bool))

    def lm_alone(self, training=False):
        return training or not bool(self.chosen)

    @property
    def needs_lm(self):
        return not (bool(self.chosen) and float(self.weight) == 0)  # stage 1 won on validation: no LM to run

    def fuse(self, graph_scores, lm_logits, training=False):
        if self.lm_alone(training):
            return lm_logits
        if not self.needs_lm:
            return self.scale * graph_scores()
        return self.scale * graph_scores() + self.gate * lm_logits

    @torch.no_grad()
    def choose(self, graph_std, lm_std, weight):
        """From now on score ``graph / graph_std + weight * lm / lm_std``."""
        self.scale.fill_(1.0 / graph_std)
        self.gate.fill_(weight / lm_std)
        self.weight.fill_(weight)
        self.chosen.fill_(True)

    def record(self):
        return {"scale": self.scale.item(), "gate": self.gate.item(),
                "weight": float(self.weight) if bool(self.chosen) else None}


SCORE_FUSIONS = {fusion.name: fusion for fusion in (ScoreFusion, ResidualFusion, ValidatedFusion)}


def score_fusion(config):
    """The fusion ``config["score_fusion"]`` names (``~`` is ``none``)."""
    name = config["score_fusion"] or "none"
    if name not in SCORE_FUSIONS:
        raise ConfigValueError(f"score_fusion={name!r} is not a score fusion. "
                               f"Fix: set score_fusion to one of {', '.join(SCORE_FUSIONS)}.")
    return SCORE_FUSIONS[name]()
