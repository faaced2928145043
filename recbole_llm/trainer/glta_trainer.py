"""GLTA's three stages, each a RecBole training loop, each checkpointed and resumable.

All checkpoints of a run live in ``<checkpoint_dir>/GLTA-<dataset>-<digest>/``, where the digest
covers every config entry that changes what is trained (not run-only ones such as the device,
logging or the stage-3 epoch budget). Running the same command again resumes: a finished stage
is loaded, not retrained; stages 2 and 3 continue from their last completed epoch. Delete the
folder to start over.

- Stage 1 (graph) trains ``model.graph`` with RecBole's own Trainer on RecBole's pairwise batches,
  early-stopped on the validation split, unless ``graph_checkpoint`` names a LightGCN checkpoint.
  With ``graph_cache`` (the default) its best embeddings are also kept in ``graph_cache_dir``
  (default ``<checkpoint_dir>/graph_cache``) under a digest of every entry stage 1 can depend on
  (all but the run-only keys and the model's ``LATER_STAGE_KEYS``), and a later run with the same
  digest (an ablation, another λ or head) loads them instead of training the same LightGCN again.
  Stage 1 is a function of the seed, the data and those entries alone (the graph is the first
  thing the model builds, and RecBole's shuffling and sampling are seeded), so the loaded
  embeddings are the ones the run would have trained (tests/test_graph_cache.py checks it with one
  torch thread; with several, CPU reductions change order and two trainings of the same stage 1
  already differ by ~1e-7).
- Stage 2 (item alignment) and stage 3 (user alignment) run RecBole's ``_train_epoch`` on batches
  of item or user ids with the model's stage loss; stage 3 goes through RecBole's ``fit``, so
  validation, early stopping and the best checkpoint are RecBole's.

Only trainable weights and the graph embeddings are saved (``GLTA.state_dict`` leaves the frozen
backbone out).
"""

import copy
import hashlib
import math
import pickle
import time
from logging import getLogger
from pathlib import Path

import torch
from recbole.data.interaction import Interaction
import recbole.trainer.trainer as recbole_trainer
from recbole.trainer import Trainer

from recbole_llm.checkpoint import load_checkpoint, random_states, restore_random_states
from recbole_llm.errors import ConfigValueError
from recbole_llm.trainer.accumulation import accumulate
from recbole_llm.utils import atomic_write, time_calls

STAGES = ("graph", "item_alignment", "user_alignment")

# Entries that change how a run is executed or reported, not what it trains.
RUN_ONLY_KEYS = {
    "checkpoint_dir", "show_progress", "state", "verbose", "device", "gpu_id", "use_gpu", "local_rank", "single_spec",
    "worker", "log_wandb", "wandb_project", "eval_batch_size", "nproc", "world_size", "ip", "port", "offset",
    "user_alignment_epochs", "stopping_step", "eval_step", "save_dataset", "save_dataloaders",
    "dataset_save_path", "dataloaders_save_path", "metrics", "topk", "valid_metric", "valid_metric_bigger",
    "metric_decimal_place", "reproducibility", "graph_cache", "graph_cache_dir",
}

# Entries that cannot change stage 1 (the graph) of any run: how it is executed or logged, and the
# keys stage 1 overrides (``epochs``, ``learning_rate``). Every other entry, unknown ones included,
# keys the shared stage-1 cache, so a missing name here costs a cache miss, never a wrong reuse.
GRAPH_IGNORED_KEYS = {
    "checkpoint_dir", "show_progress", "state", "verbose", "gpu_id", "local_rank", "single_spec", "log_wandb",
    "wandb_project", "eval_batch_size", "save_dataset", "save_dataloaders", "dataset_save_path",
    "dataloaders_save_path", "metric_decimal_place", "graph_cache", "graph_cache_dir", "graph_checkpoint",
    "epochs", "learning_rate",
}

# The language-model keys every plugin LLM model reads only after stage 1.
BACKBONE_KEYS = {
    "llm_path", "llm_cache_dir", "llm_num_layers", "llm_dtype", "lora_r", "lora_alpha", "lora_dropout",
    "lora_target_modules", "llm_gradient_checkpointing", "gradient_accumulation_steps",
}


def config_digest(config, ignored):
    """Digest of every config entry whose key is not in ``ignored``."""
    items = sorted((k, repr(v)) for k, v in config.final_config_dict.items() if k not in ignored)
    return hashlib.sha256(repr(items).encode()).hexdigest()[:12]


def run_digest(config):
    return config_digest(config, RUN_ONLY_KEYS)


def graph_digest(config, later_stage_keys):
    """Digest of every config entry that can change stage 1: the key of the shared stage-1 cache."""
    return config_digest(config, GRAPH_IGNORED_KEYS | later_stage_keys)


def atomic_save(obj, path):
    atomic_write(path, lambda f: torch.save(obj, f))


class StageBatches:
    """Shuffled batches of user or item ids, shaped like the RecBole dataloaders the train loop reads.

    ``group`` keeps batches a multiple of it (stage 2's m items per prompt), dropping the remainder
    of each epoch's shuffle. Each rank of a multi-process run takes its own share of every batch.
    """

    shuffle = False  # RecBole's loop would otherwise reach for a DistributedSampler

    def __init__(self, field, ids, batch_size, dataset, seed, group=1, rank=0, world_size=1):
        self.field, self.ids, self.dataset = field, ids, dataset
        self.batch_size = batch_size * group
        self.group, self.seed, self.rank, self.world_size = group, seed, rank, world_size
        self.epoch = 0

    def __len__(self):
        return math.ceil(len(self.ids) // self.group * self.group / self.batch_size)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        order = self.ids[torch.randperm(len(self.ids), generator=generator)]
        order = order[: len(order) // self.group * self.group]
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size].view(-1, self.group)[self.rank::self.world_size].reshape(-1)
            if len(batch):
                yield Interaction({self.field: batch})


class GLTATrainer(Trainer):
    # GLTA's keys that only stages 2 and 3 read: runs that differ in nothing else share stage 1.
    LATER_STAGE_KEYS = BACKBONE_KEYS | {
        "item_alignment", "item_alignment_items", "item_alignment_epochs", "item_alignment_lr",
        "item_alignment_batch_size", "item_alignment_system", "item_alignment_prompt", "user_alignment",
        "user_alignment_targets", "user_alignment_epochs", "user_alignment_lr", "user_alignment_batch_size",
        "max_history", "user_alignment_system", "user_alignment_prompt", "use_profile", "use_prediction",
        "profile_words", "prediction_words", "user_text_items", "user_text_max_tokens", "gllm_head", "head_norm",
    }

    def __init__(self, config, model):
        super().__init__(config, model)
        self.logger = getLogger()
        self.run_dir = Path(config["checkpoint_dir"]) / f"GLTA-{config['dataset']}-{run_digest(config)}"
        self.saved_model_file = str(self.run_dir / "GLTA-best.pth")
        self.stage_seconds_per_epoch = {stage: [] for stage in STAGES}
        self.stage_loss_per_epoch = {stage: [] for stage in STAGES}
        self.resumed = False  # whether this run picked up a finished stage or epoch of an earlier one
        self.graph_source = None  # where stage 1 came from: trained, graph_checkpoint, cache or run checkpoint
        self.rank = 0 if config["single_spec"] else config["local_rank"]
        self.world_size = 1 if config["single_spec"] else config["world_size"]

    def _stage_config(self, **overrides):
        config = copy.copy(self.config)
        config.final_config_dict = {**self.config.final_config_dict, **overrides}
        return config

    def _batches(self, field, ids, batch_size, dataset, group=1):
        return StageBatches(field, ids, batch_size, dataset, self.config["seed"], group, self.rank, self.world_size)

    def _build_optimizer(self, **kwargs):
        return accumulate(super()._build_optimizer(**kwargs), self.config)

    def _is_writer(self):
        return self.rank == 0

    def _random_generators(self):
        """The run's own generators, by name, whose states its checkpoints carry beside the global ones."""
        return {}

    def _load_stage(self, path, fix):
        """A stage checkpoint of this run, its random states restored: the run goes on as if never stopped."""
        checkpoint = load_checkpoint(path, map_location=self.device, fix=f"delete that file: {fix}")
        if "rng" in checkpoint:  # absent from files written before the plugin saved them
            restore_random_states(checkpoint["rng"], **self._random_generators())
        self.resumed = True
        return checkpoint

    def _rewrap_ddp(self):
        """Wrap the model in DDP again: DDP fixes the set of parameters it reduces when it wraps, and
        stage 1 has since frozen the graph (left registered, DDP would wait for their gradients)."""
        if self.world_size > 1:
            self.distributed_model = recbole_trainer.DistributedDataParallel(self.model, device_ids=[self.config["local_rank"]])

    def _barrier(self):
        """Under DDP, wait until rank 0 has written what every rank reads next."""
        if self.world_size > 1:
            torch.distributed.barrier()

    # ----- stage 1 ------------------------------------------------------------------------------

    def _graph_cache_file(self):
        """The shared stage-1 file of this run's graph settings, or None when ``graph_cache`` is off."""
        if not self.config["graph_cache"]:
            return None
        root = Path(self.config["graph_cache_dir"] or Path(self.config["checkpoint_dir"]) / "graph_cache")
        digest = graph_digest(self.config, self.LATER_STAGE_KEYS)
        return root / f"{self.config['model']}-{self.config['dataset']}-{digest}.pth"

    def _graph_stage(self, train_data, valid_data, verbose, show_progress):
        done = self.run_dir / "stage1_graph.pth"
        if done.is_file():
            self.model.load_state_dict(self._load_stage(done, "the same command then trains stage 1 again.")["state_dict"])
            # The checkpoint holds the frozen graph embeddings; the graph's weights stay out of training,
            # as freeze_graph leaves them (or DDP would reduce their gradients and counts would include them).
            self.model.graph.requires_grad_(False)
            self.logger.info(f"Stage 1 (graph) done earlier: loaded {done}")
            self.graph_source = "run checkpoint"
            return
        graph = self.model.graph
        cached = self._graph_cache_file()
        if self.config["graph_checkpoint"]:
            self._load_graph_checkpoint(self.config["graph_checkpoint"])
            self.graph_source = "graph_checkpoint"
        elif cached is not None and cached.is_file():
            self._load_graph_checkpoint(cached, from_cache=True)
            self.logger.info("Stage 1 (graph): trained by an earlier run with the same graph settings, seed and data "
                             "(graph_cache; set graph_cache=False to train it again)")
            self.graph_source = "cache"
        else:
            graph_trainer = Trainer(self._stage_config(epochs=self.config["graph_epochs"],
                                                       learning_rate=self.config["graph_learning_rate"]), graph)
            graph_trainer.saved_model_file = str(self.run_dir / "stage1_graph_best.pth")
            time_calls(graph_trainer, "_train_epoch", self.stage_seconds_per_epoch["graph"])
            self.logger.info("Stage 1 (graph): LightGCN with BPR on the training interactions")
            graph_trainer.fit(train_data, valid_data, verbose=verbose, saved=True, show_progress=show_progress)
            self.stage_loss_per_epoch["graph"] = list(graph_trainer.train_loss_dict.values())
            self._barrier()  # only rank 0 writes the best graph checkpoint
            best = torch.load(graph_trainer.saved_model_file, map_location=self.device, weights_only=False)
            graph.load_state_dict(best["state_dict"])
            self.graph_source = "trained"
            if cached is not None and self._is_writer():
                state = graph.state_dict()
                embeddings = {k: state[k].cpu() for k in ("user_embedding.weight", "item_embedding.weight")}
                atomic_save({"state_dict": embeddings, "best_epoch": best["epoch"]}, cached)  # for inspection
        self.model.freeze_graph()
        if self._is_writer():
            atomic_save({"stage": "graph", "state_dict": self.model.state_dict(),
                         "rng": random_states(**self._random_generators())}, done)

    def _load_graph_checkpoint(self, path, from_cache=False):
        """Stage 1's embeddings from ``path``: a ``graph_checkpoint`` or, ``from_cache``, a stage-1 cache file."""
        if from_cache:
            what = f"The stage-1 cache file {str(path)!r}"
            fix = ("Fix: delete that file (the next run trains stage 1 and stores it again), or set graph_cache=False "
                   "to train stage 1 without the cache.")
        else:
            what = f"graph_checkpoint={str(path)!r}"
            fix = "Fix: point it at a .pth file saved by RecBole's LightGCN or FastLightGCN on this dataset, or unset it."
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)["state_dict"]
            users, items = state["user_embedding.weight"], state["item_embedding.weight"]
        except (OSError, KeyError, RuntimeError, pickle.UnpicklingError, EOFError) as error:
            raise ConfigValueError(
                f"{what} is not a LightGCN checkpoint ({type(error).__name__}: {error}). {fix}"
            ) from error
        graph = self.model.graph
        if users.shape != graph.user_embedding.weight.shape or items.shape != graph.item_embedding.weight.shape:
            raise ConfigValueError(
                f"{what} holds {tuple(users.shape)} user and {tuple(items.shape)} item embeddings; this "
                f"dataset and embedding_size need {tuple(graph.user_embedding.weight.shape)} and "
                f"{tuple(graph.item_embedding.weight.shape)}. {fix}"
            )
        graph.user_embedding.weight.data.copy_(users)
        graph.item_embedding.weight.data.copy_(items)
        self.logger.info(f"Stage 1 (graph): embeddings from {path}")

    # ----- stage 2 ------------------------------------------------------------------------------

    def _item_alignment_stage(self, dataset, show_progress):
        model, config = self.model, self.config
        if not config["item_alignment"]:
            model.init_head_from_item_tokens()
            return
        latest = self.run_dir / "stage2_item_alignment.pth"
        self.optimizer = self._build_optimizer(params=model.item_alignment_parameters(),
                                               learning_rate=config["item_alignment_lr"])
        start = 0
        if latest.is_file():
            checkpoint = self._load_stage(latest, "the same command then trains stage 2 again (stage 1 is kept).")
            model.load_state_dict(checkpoint["state_dict"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            start = checkpoint["epoch"] + 1
            self.logger.info(f"Stage 2 (item alignment): resuming after epoch {checkpoint['epoch']} from {latest}")
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
            if self._is_writer():
                atomic_save({"stage": "item_alignment", "epoch": epoch, "state_dict": model.state_dict(),
                             "optimizer": self.optimizer.state_dict(),
                             "rng": random_states(**self._random_generators())}, latest)

    # ----- stage 3 ------------------------------------------------------------------------------

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        began = time.perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func or self.model.user_alignment_loss,
                                    show_progress=show_progress)
        self.stage_seconds_per_epoch["user_alignment"].append(time.perf_counter() - began)
        self.stage_loss_per_epoch["user_alignment"].append(loss)
        if self.eval_step <= 0 or (epoch_idx + 1) % self.eval_step:
            self._save_latest(epoch_idx)  # not validated this epoch; otherwise saved after validation
        return loss

    def _save_latest(self, epoch_idx):
        self._save_last_stage(epoch_idx, self.run_dir / "stage3_latest.pth")

    def _save_last_stage(self, epoch_idx, path):
        """The last stage after ``epoch_idx`` with the random states its next epoch draws its targets from
        (RecBole's ``_save_checkpoint`` keeps none, so a resumed run trained on other targets)."""
        if self._is_writer():
            atomic_save({"epoch": epoch_idx, "cur_step": self.cur_step, "best_valid_score": self.best_valid_score,
                         "best_valid_result": self.best_valid_result, "state_dict": self.model.state_dict(),
                         "optimizer": self.optimizer.state_dict(),
                         "rng": random_states(**self._random_generators())}, path)

    def _resume_last_stage(self, path):
        checkpoint = self._load_stage(path, "the same command then trains this stage again (earlier stages are kept).")
        self.model.load_state_dict(checkpoint["state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.start_epoch, self.cur_step = checkpoint["epoch"] + 1, checkpoint["cur_step"]
        self.best_valid_score, self.best_valid_result = checkpoint["best_valid_score"], checkpoint["best_valid_result"]

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        """Stages 1 and 2 as needed, then stage 3 through RecBole's fit; returns its best valid score and result."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._graph_stage(train_data, valid_data, verbose, show_progress)
        self._rewrap_ddp()
        self._item_alignment_stage(train_data.dataset, show_progress)

        model, config = self.model, self.config
        self.optimizer = self._build_optimizer(params=model.user_alignment_parameters(),
                                               learning_rate=config["user_alignment_lr"])
        self.epochs = config["user_alignment_epochs"] if config["user_alignment"] else 0
        self.eval_step = min(config["eval_step"], self.epochs)
        latest = self.run_dir / "stage3_latest.pth"
        if latest.is_file():
            self._resume_last_stage(latest)
        users = torch.arange(1, model.n_users)
        batches = self._batches(model.USER_ID, users, config["user_alignment_batch_size"], train_data.dataset)
        batches.epoch = self.start_epoch

        def after_validation(epoch_idx, valid_score):
            self._save_latest(epoch_idx)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        return super().fit(batches, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                           callback_fn=after_validation)
