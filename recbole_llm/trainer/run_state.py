"""A run's state on disk: its digest, its folder, and its training position kept there.

A run's folder is ``<checkpoint_dir>/<model>-<dataset>-<digest>/``, where the digest covers every
config entry that changes what is trained (not the run-only ones, ``RUN_ONLY_KEYS``: bookkeeping,
devices and evaluation, and the epoch budget, ``BUDGET_KEYS``). Running the same command again
finds the same folder and resumes from it, and so does the same command with a longer budget.

A training position is one file of one layout, whatever wrote it (stage 1, GLTA's stage 2, the last
stage of GLTA and GAL-Rec, a stock model's RecBole training loop):

- ``stage``, ``epoch`` (the last finished one; None for a stage saved once, when it is done) and
  ``done`` (the stage trains no further: it is complete, or early stopping ended it; a stage that
  merely used up its epochs is not done, so a run with a longer budget continues it);
- the model's ``state_dict`` and ``other_parameter``, the ``optimizer``'s state (None where none
  trains), RecBole's early-stopping state (``cur_step``, ``best_valid_score``, ``best_valid_result``,
  ``train_loss_dict``) and ``best_file``, the best checkpoint's path relative to ``checkpoint_dir``;
- ``rng``: every random state the next epoch draws from (``checkpoint.random_states``).

The keys RecBole's own checkpoints share are named as RecBole names them. RecBole's
``Trainer.resume_checkpoint`` does not fit as it is: it reads the pickled Config that its checkpoints
carry, points the best checkpoint at the file it resumes from, and restores no random state nor the
best validation result. The files hold tensors, numbers and strings only, and are read back with
``torch.load(weights_only=True)``: resuming unpickles no code. ``best_file`` is relative, so a
checkpoint folder resumes where it lies: a run writes only under its own ``checkpoint_dir``, even
when that folder is a copy of another run's.

The stage-1 cache of GLTA and GAL-Rec is keyed by ``graph_digest``: every entry but those that
cannot change stage 1 and those only the later stages read, which the model class derives from its
property files (``GraphLMRecommender.later_stage_keys``).
"""

import contextlib
import hashlib
import os
from pathlib import Path

import numpy as np

from recbole_llm.checkpoint import load_checkpoint, random_states, restore_random_states
from recbole_llm.errors import CheckpointError
from recbole_llm.helpers import atomic_save

# Where a run writes and what it logs: they change neither what it trains nor its stage 1.
BOOKKEEPING_KEYS = frozenset({
    "checkpoint_dir", "show_progress", "state", "verbose", "gpu_id", "local_rank", "single_spec", "log_wandb",
    "wandb_project", "eval_batch_size", "save_dataset", "save_dataloaders", "dataset_save_path",
    "dataloaders_save_path", "metric_decimal_place",
})
# How a run is spread over processes and devices, and what its validation reports. Stage 1 early-stops
# on that validation, so only the run digest leaves them out.
EXECUTION_KEYS = frozenset({
    "device", "use_gpu", "worker", "nproc", "world_size", "ip", "port", "offset", "metrics", "topk", "valid_metric",
    "valid_metric_bigger", "reproducibility",
})
# The budget of the stage that fit trains: its epochs, and how often and how long it validates without
# gain. Out of every run digest, so a longer run resumes a shorter one. Stage 1 reads ``eval_step`` (unless
# ``graph_eval_step`` is set) and ``stopping_step`` for its own early stopping, so the stage-1 cache keeps those two.
BUDGET_KEYS = frozenset({"epochs", "user_alignment_epochs", "eval_step", "stopping_step"})
# Whether and where stage 1 is cached: how a run obtains its stage 1, not what it is.
GRAPH_CACHE_KEYS = frozenset({"graph_cache", "graph_cache_dir"})

# What the test reads (GLTA's and GAL-Rec's ``fold_in_valid``): it changes no training nor validation.
TEST_KEYS = frozenset({"fold_in_valid"})

RUN_ONLY_KEYS = BOOKKEEPING_KEYS | EXECUTION_KEYS | BUDGET_KEYS | GRAPH_CACHE_KEYS | TEST_KEYS


# Keys added after run folders and stage-1 caches were first written, with the value that leaves them
# out of every digest: a run that does not set them keeps the folders and caches of earlier runs.
ADDED_KEYS_UNSET = {"item_text_file": None, "users_per_epoch": None, "graph_eval_step": None, "id_tower": 0.0,
                    "next_item_cut": "random", "id_tower_users": "id"}


def config_digest(config, ignored):
    """Digest of every config entry whose key is not in ``ignored`` (nor an ``ADDED_KEYS_UNSET`` key at its value)."""
    items = sorted((k, repr(v)) for k, v in config.final_config_dict.items()
                   if k not in ignored and not (k in ADDED_KEYS_UNSET and v == ADDED_KEYS_UNSET[k]))
    return hashlib.sha256(repr(items).encode()).hexdigest()[:12]


def run_digest(config):
    """Digest of every entry that changes what a run trains: the name of its run folder."""
    return config_digest(config, RUN_ONLY_KEYS)


def graph_digest(config, ignored):
    """Digest of every config entry that can change stage 1: the key of the shared stage-1 cache.

    Left out: bookkeeping, the cache settings and ``graph_checkpoint`` (which replaces stage 1), and
    ``ignored``: what the model class says stage 1 does not read (``graph_cache_digest``).
    """
    return config_digest(config, BOOKKEEPING_KEYS | GRAPH_CACHE_KEYS | {"graph_checkpoint"} | ignored)


def plain(value):
    """``value`` with numpy scalars (RecBole's metrics) as Python numbers, so ``weights_only`` reads it back."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return type(value)((k, plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


class RunState:
    """Mixin before a RecBole ``Trainer``: the run folder, and the training position kept in it.

    ``save_position`` and ``restore_position`` write and read a position of any stage; ``fit_from``
    is RecBole's ``fit`` continued from the position a killed run left, keeping the position after
    every finished epoch of fit's loop (after its validation, where one follows).
    """

    LATEST_FILE = "latest.pth"  # the position of the stage trained through fit

    def __init__(self, config, model):
        super().__init__(config, model)
        self.run_dir = self._run_dir(config)
        self.resumed = False  # whether this run continued an earlier one (read by quick_start)
        self._fit_data = None
        self._validates = False
        self._last_epoch = None  # the last epoch of fit's loop this process finished
        self.fit_stage = "train"  # the name of the stage fit trains, in its positions
        self.stage_seconds_per_epoch = None  # multi-stage trainers: stage name to seconds per epoch
        self.graph_source = None  # GLTA's and GAL-Rec's: where stage 1 came from

    # ----- what the runner reads after fit (quick_start) ------------------------------------------

    def graph_test_result(self, test_data):
        """Test metrics of the model's stage 1 alone, where it has one (GLTA, GAL-Rec); else None."""
        return None

    def fusion_weights(self):
        """The model's score-fusion weights, where it fuses scores (GLTA, GAL-Rec); else None."""
        return None

    def folds_in(self, eval_data):
        """Whether ``evaluate`` folds the validation interactions into ``eval_data``'s scoring (GLTA's and GAL-Rec's
        ``fold_in_valid``); never elsewhere."""
        return False

    @contextlib.contextmanager
    def unfolded(self):
        """Within it, nothing is folded in (GLTA's and GAL-Rec's trainers turn ``fold_in_valid`` off)."""
        yield

    def discard_resume_state(self):
        """Called once the run's test is done. A multi-stage run keeps its folder: the same command with a
        longer last stage continues it, and its stages serve ablations (``graph_cache``)."""

    @property
    def latest_file(self):
        return self.run_dir / self.LATEST_FILE

    def _run_dir(self, config):
        return Path(config["checkpoint_dir"]) / f"{config['model']}-{config['dataset']}-{run_digest(config)}"

    def _is_writer(self):
        return self.config["single_spec"] or self.config["local_rank"] == 0

    def _random_generators(self):
        """The run's own generators, by name, whose states a position carries beside the global ones."""
        return {"loader": getattr(self._fit_data, "generator", None)}

    # ----- the training position ---------------------------------------------------------------

    def save_position(self, path, stage, epoch, done=False, optimizer=None, loss=None):
        """Write the position after ``epoch`` of ``stage`` to ``path`` (rank 0 only), atomically.

        ``loss``: the epoch's loss, when saved from inside ``_train_epoch``, before fit records it.
        """
        if not self._is_writer():
            return
        losses = dict(self.train_loss_dict)
        if loss is not None:
            losses[epoch] = sum(loss) if isinstance(loss, tuple) else loss
        atomic_save({
            "stage": stage,
            "epoch": epoch,
            "done": done,
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": None if optimizer is None else optimizer.state_dict(),
            "cur_step": self.cur_step,
            "best_valid_score": plain(self.best_valid_score),
            "best_valid_result": plain(self.best_valid_result),
            "best_file": os.path.relpath(self.saved_model_file, self.config["checkpoint_dir"]),
            "train_loss_dict": plain(losses),
            "rng": random_states(**self._random_generators()),
        }, path)

    def restore_position(self, path, fix, optimizer=None, fit=False):
        """Load the position at ``path`` into the model (and ``optimizer``) and restore its random states,
        so the run goes on as if never stopped; with ``fit``, also RecBole's loop state (the next epoch,
        early stopping, the best checkpoint under this run's ``checkpoint_dir``). Returns the position."""
        position = load_checkpoint(path, map_location=self.device, fix=f"delete that file: {fix}", weights_only=True)
        self.model.load_state_dict(position["state_dict"])
        self.model.load_other_parameter(position["other_parameter"])
        if optimizer is not None:
            optimizer.load_state_dict(position["optimizer"])
        if fit:
            self.start_epoch = position["epoch"] + 1
            self.cur_step = position["cur_step"]
            self.best_valid_score = position["best_valid_score"]
            self.best_valid_result = position["best_valid_result"]
            self.train_loss_dict = dict(position["train_loss_dict"])
            self.saved_model_file = str(Path(self.config["checkpoint_dir"]) / position["best_file"])
        restore_random_states(position["rng"], **self._random_generators())
        self.resumed = True
        return position

    # ----- RecBole's fit, resumable ------------------------------------------------------------

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        # Only epochs of fit's loop are kept: a direct call (an epoch timer, another stage) writes nothing.
        if train_data is self._fit_data and (not self._validates or (epoch_idx + 1) % self.eval_step):
            self._keep_position(epoch_idx, loss)  # no validation this epoch; otherwise kept after it
        return loss

    def _keep_position(self, epoch_idx, loss=None, done=False):
        self._last_epoch = epoch_idx
        self.save_position(self.latest_file, self.fit_stage, epoch_idx, done, self.optimizer, loss)

    def _before_fit(self, train_data, valid_data, saved, show_progress):
        """Called once fit is about to train (the position restored, if any): a subclass's last preparations."""

    def fit_from(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None,
                 fix="the same command then trains this run again from its first epoch."):
        """RecBole's ``fit``, continued from ``latest_file`` when a killed run left one; returns its best
        valid score and result. A stage that is done, or whose epochs are all trained, is not trained
        again (RecBole's fit would save its last epoch as the best checkpoint)."""
        self._fit_data = train_data
        self._validates = self.eval_step > 0 and bool(valid_data)
        position = None
        if self.latest_file.is_file():
            position = self.restore_position(self.latest_file, fix, self.optimizer, fit=True)
        done = position is not None and position["done"]
        if position is not None:
            if self.best_valid_result is not None and saved and not Path(self.saved_model_file).is_file():
                raise CheckpointError(
                    f"The run folder {str(self.run_dir)!r} resumes a run whose best checkpoint "
                    f"{self.saved_model_file!r} is not there. Fix: copy that file from the killed run's checkpoint_dir into this one, or delete "
                    "the run folder to train again from the first epoch."
                )
            self.logger.info(f"Resuming from {self.latest_file}: epoch {self.start_epoch} of {self.epochs}"
                             + (" (training had ended)" if done else ""))
        if done or 0 < self.epochs <= self.start_epoch:
            return self.best_valid_score, self.best_valid_result
        self._before_fit(train_data, valid_data, saved, show_progress)

        def after_validation(epoch_idx, valid_score):
            self._keep_position(epoch_idx)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        self._last_epoch = None
        result = super().fit(train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                             callback_fn=after_validation)
        if self._last_epoch is not None and self._last_epoch + 1 < self.epochs:
            self._keep_position(self._last_epoch, done=True)  # fit's loop ended early: early stopping
        return result
