"""Trainers of multi-stage plugin models, found by name as ``<Model>Trainer`` (see ``utils.get_trainer``)."""
