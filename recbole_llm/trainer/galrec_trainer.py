"""GAL-Rec's two stages: the graph stage, then graph-aware learning through RecBole's own ``fit``.

- Stage 1 (graph) is ``GraphStageTrainer``'s: LightGCN with BPR on the training interactions, or
  the embeddings of ``graph_checkpoint``, or those of an earlier run that differs only in the keys
  ``GALRec.later_stage_keys()`` names (``graph_cache``); saved as ``stage1_graph.pth`` and loaded,
  not retrained, when a run starts again.
- Stage 2 (graph-aware learning) trains the joint loss on shuffled batches of user ids
  (``prompt_batch_size`` users a step, ``users_per_epoch`` users an epoch) for ``epochs`` epochs;
  validation, early stopping and the best checkpoint (``GALRec-best.pth``) are RecBole's.
  ``graph_aware_latest.pth`` holds the last finished epoch, to resume from. The epoch budget is
  not part of the run digest, so a longer run resumes a shorter one.
"""

from recbole_llm.trainer.graph_stage_trainer import GraphStageTrainer


class GALRecTrainer(GraphStageTrainer):
    STAGES = ("graph", "graph_aware")
    LATEST_FILE = "graph_aware_latest.pth"

    def _random_generators(self):
        return {**super()._random_generators(), "neighbour_sampler": self.model.generator}

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        """Stage 1 as needed, then graph-aware learning through RecBole's fit; returns its best valid score and result."""
        self.prepare_graph(train_data, valid_data, verbose, show_progress)

        model = self.model
        model.init_head_from_item_tokens()  # replaced by the checkpoint's head when resuming below
        self.optimizer = self._build_optimizer(params=model.graph_aware_parameters())
        # Users without a target (a training interaction, or a held-out one) have nothing to learn from.
        batches = self._batches(model.USER_ID, model.lm_users, self.config["prompt_batch_size"], train_data.dataset,
                                limit=self.config["users_per_epoch"])
        return self.fit_last_stage(batches, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                                   callback_fn=callback_fn)
