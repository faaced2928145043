"""Trainers of multi-stage plugin models, found by name as ``<Model>Trainer`` (see ``utils.get_trainer``)."""

from recbole_llm.trainer.galrec_trainer import GALRecTrainer
from recbole_llm.trainer.glta_trainer import GLTATrainer
from recbole_llm.trainer.graph_stage_trainer import GraphStageTrainer
from recbole_llm.trainer.resume import ResumableTraining, resumable

__all__ = ["GALRecTrainer", "GLTATrainer", "GraphStageTrainer", "ResumableTraining", "resumable"]
