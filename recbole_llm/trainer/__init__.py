"""Trainers of multi-stage plugin models, found by name as ``<Model>Trainer`` (see ``utils.get_trainer``).

Each is imported on first use: GLTA's and GAL-Rec's trainers load transformers, which a stock
model's run (it needs only ``resumable``) would otherwise import for nothing.
"""

import importlib

_MODULES = {"GALRecTrainer": "galrec_trainer", "GLTATrainer": "glta_trainer", "GraphStageTrainer": "graph_stage_trainer",
            "ResumableTraining": "resume", "resumable": "resume"}

__all__ = list(_MODULES)


def __getattr__(name):
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
