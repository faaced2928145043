"""GLTA's three stages, each a RecBole training loop, each checkpointed and resumable.

- Stage 1 (graph) is ``GraphStageTrainer``'s: LightGCN with BPR on the training interactions, or
  the embeddings of ``graph_checkpoint``, or those of an earlier run that differs only in the keys
  ``GLTA.later_stage_keys()`` names (``graph_cache``).
- Stage 2 (item alignment) runs RecBole's ``_train_epoch`` on batches of item ids with the model's
  item-alignment loss; ``stage2_item_alignment.pth`` holds its last finished epoch.
- Stage 3 (user alignment) goes through RecBole's ``fit`` on batches of user ids, so validation,
  early stopping and the best checkpoint (``GLTA-best.pth``) are RecBole's; an epoch reads
  ``users_per_epoch`` random users (all by default). ``stage3_latest.pth`` holds its last finished
  epoch. Its epoch budget (``user_alignment_epochs``) is not part of the run digest, so a longer run
  resumes a shorter one.
"""

import time

import torch

from recbole_llm.trainer.graph_stage_trainer import GraphStageTrainer


class GLTATrainer(GraphStageTrainer):
    STAGES = ("graph", "item_alignment", "user_alignment")
    LATEST_FILE = "stage3_latest.pth"

    # ----- stage 2 ------------------------------------------------------------------------------

    def _item_alignment_stage(self, dataset, show_progress):
        model, config = self.model, self.config
        if not model.item_alignment:  # off, or the id control (no descriptions to align with)
            model.init_head_from_item_tokens()
            return
        latest = self.run_dir / "stage2_item_alignment.pth"
        self.optimizer = self._build_optimizer(params=model.item_alignment_parameters(),
                                               learning_rate=config["item_alignment_lr"])
        start = 0
        if latest.is_file():
            position = self.restore_position(latest, "the same command then trains stage 2 again (stage 1 is kept).",
                                             self.optimizer)
            start = position["epoch"] + 1
            self.logger.info(f"Stage 2 (item alignment): resuming after epoch {position['epoch']} from {latest}")
        else:
            model.init_head_from_item_tokens()
        items = torch.arange(1, model.n_items)
        batches = self._batches(model.ITEM_ID, items, config["item_alignment_batch_size"], dataset,
                                group=config["item_alignment_items"])
        batches.epoch = start
        for epoch in range(start, config["item_alignment_epochs"]):
            began = time.perf_counter()
            loss = super()._train_epoch(batches, epoch, loss_func=model.item_alignment_loss, show_progress=show_progress)
            self.stage_seconds_per_epoch["item_alignment"].append(time.perf_counter() - began)
            self.stage_loss_per_epoch["item_alignment"].append(loss)
            self.logger.info(f"Stage 2 (item alignment) epoch {epoch}: loss {loss:.4f}, "
                             f"{self.stage_seconds_per_epoch['item_alignment'][-1]:.1f} s")
            self.save_position(latest, "item_alignment", epoch, optimizer=self.optimizer)

    # ----- stage 3 ------------------------------------------------------------------------------

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func or self.model.user_alignment_loss,
                                    show_progress=show_progress)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        """Stages 1 and 2 as needed, then stage 3 through RecBole's fit; returns its best valid score and result."""
        self.prepare_graph(train_data, valid_data, verbose, show_progress)
        self._item_alignment_stage(train_data.dataset, show_progress)

        model, config = self.model, self.config
        self.optimizer = self._build_optimizer(params=model.user_alignment_parameters(),
                                               learning_rate=config["user_alignment_lr"])
        self.epochs = config["user_alignment_epochs"] if config["user_alignment"] else 0
        batches = self._batches(model.USER_ID, model.lm_users, config["user_alignment_batch_size"], train_data.dataset,
                                limit=config["users_per_epoch"])
        return self.fit_last_stage(batches, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                                   callback_fn=callback_fn)
