"""GAL-Rec's two stages: GLTA's graph stage, then graph-aware learning through RecBole's own ``fit``.

Checkpoints live in ``<checkpoint_dir>/GALRec-<dataset>-<digest>/`` (the digest as GLTA's, with the
epoch budget left out too, so a longer run resumes a shorter one):

- Stage 1 (graph) is ``GLTATrainer``'s: LightGCN with BPR on the training interactions, or the
  embeddings of ``graph_checkpoint``, or those of an earlier run that differs only in stage-2 keys
  (``graph_cache``); saved as ``stage1_graph.pth`` and loaded, not retrained, when a run starts again.
- Stage 2 (graph-aware learning) trains the joint loss on shuffled batches of user ids
  (``prompt_batch_size`` users a step, ``users_per_epoch`` users an epoch) for ``epochs`` epochs;
  validation, early stopping and the best checkpoint (``GALRec-best.pth``) are RecBole's.
  ``graph_aware_latest.pth`` holds the last finished epoch, to resume from.
"""

import itertools
import math
import time
from pathlib import Path

import torch
from recbole.trainer import Trainer

from recbole_llm.trainer.glta_trainer import BACKBONE_KEYS, GLTATrainer, StageBatches, run_digest

STAGES = ("graph", "graph_aware")


class UserSample(StageBatches):
    """``StageBatches`` over a fresh random subset of ``limit`` ids each epoch (all when ``limit`` is None)."""

    def __init__(self, *args, limit=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit = limit

    def __len__(self):
        full = super().__len__()
        return full if self.limit is None else min(full, math.ceil(self.limit / self.batch_size))

    def __iter__(self):
        # Every epoch reshuffles all ids, so its first batches are a fresh random subset.
        return itertools.islice(super().__iter__(), len(self))


class GALRecTrainer(GLTATrainer):
    # GAL-Rec's keys that only stage 2 reads: runs that differ in nothing else share stage 1.
    LATER_STAGE_KEYS = BACKBONE_KEYS | {
        "use_item_text", "n_hop1", "n_hop2", "prompt_system", "lambda1", "lambda2", "lambda3", "lambda4", "tau",
        "queue_size", "momentum", "projection_size", "gllm_head", "head_norm", "pooling", "use_l1", "use_l2", "use_l3",
        "use_queue", "use_hop2", "prompt_batch_size", "users_per_epoch",
    }

    def __init__(self, config, model):
        super().__init__(config, model)
        self.run_dir = Path(config["checkpoint_dir"]) / f"GALRec-{config['dataset']}-{run_digest(self._stage_config(epochs=None))}"
        self.saved_model_file = str(self.run_dir / "GALRec-best.pth")
        self.stage_seconds_per_epoch = {stage: [] for stage in STAGES}
        self.stage_loss_per_epoch = {stage: [] for stage in STAGES}

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        began = time.perf_counter()
        loss = Trainer._train_epoch(self, train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.stage_seconds_per_epoch["graph_aware"].append(time.perf_counter() - began)
        self.stage_loss_per_epoch["graph_aware"].append(loss)
        if self.eval_step <= 0 or (epoch_idx + 1) % self.eval_step:
            self._save_latest(epoch_idx)  # not validated this epoch; otherwise saved after validation
        return loss

    def _random_generators(self):
        return {"neighbour_sampler": self.model.generator}

    def _save_latest(self, epoch_idx):
        self._save_last_stage(epoch_idx, self.run_dir / "graph_aware_latest.pth")

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        """Stage 1 as needed, then graph-aware learning through RecBole's fit; returns its best valid score and result."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._graph_stage(train_data, valid_data, verbose, show_progress)
        self._rewrap_ddp()

        model = self.model
        model.init_head_from_item_tokens()  # replaced by the checkpoint's head when resuming below
        self.optimizer = self._build_optimizer(params=model.graph_aware_parameters())
        self.eval_step = min(self.config["eval_step"], self.epochs)
        latest = self.run_dir / "graph_aware_latest.pth"
        if latest.is_file():
            self._resume_last_stage(latest)
        # Users without a training interaction have no prompt context and no target.
        users = torch.nonzero(model.user_items.degree(torch.arange(model.n_users)) > 0).squeeze(1)
        batches = UserSample(model.USER_ID, users, self.config["prompt_batch_size"], train_data.dataset,
                             self.config["seed"], rank=self.rank, world_size=self.world_size,
                             limit=self.config["users_per_epoch"])
        batches.epoch = self.start_epoch

        def after_validation(epoch_idx, valid_score):
            self._save_latest(epoch_idx)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        return Trainer.fit(self, batches, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                           callback_fn=after_validation)
