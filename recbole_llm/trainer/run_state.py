"""A run's state on disk: its digest, its folder, and the last finished epoch kept there.

A run's folder is ``<checkpoint_dir>/<model>-<dataset>-<digest>/``, where the digest covers every
config entry that changes what is trained (not the run-only ones, ``RUN_ONLY_KEYS``: the device,
logging, evaluation, the epoch budget of a last stage). Running the same command again finds the
same folder and resumes from it. ``RunState`` keeps the last finished epoch there: after each
training epoch fit runs, or after its validation where one follows, so a resumed run restarts at
the next epoch with RecBole's early-stopping state as it was.

The stage-1 cache of GLTA and GAL-Rec is keyed by ``graph_digest``: every entry but those that
cannot change stage 1 (``GRAPH_IGNORED_KEYS``) and those the model declares only its later stages
read (the model class's ``LATER_STAGE_KEYS``).
"""

import copy
import hashlib
from pathlib import Path

# Entries that change how a run is executed or reported, not what it trains; and
# user_alignment_epochs, GLTA's stage-3 budget, so that a longer run resumes a shorter one.
RUN_ONLY_KEYS = frozenset({
    "checkpoint_dir", "show_progress", "state", "verbose", "device", "gpu_id", "use_gpu", "local_rank", "single_spec",
    "worker", "log_wandb", "wandb_project", "eval_batch_size", "nproc", "world_size", "ip", "port", "offset",
    "user_alignment_epochs", "stopping_step", "eval_step", "save_dataset", "save_dataloaders",
    "dataset_save_path", "dataloaders_save_path", "metrics", "topk", "valid_metric", "valid_metric_bigger",
    "metric_decimal_place", "reproducibility", "graph_cache", "graph_cache_dir",
})

# Entries that cannot change stage 1 (the graph) of any run: how it is executed or logged, and the
# keys stage 1 overrides (``epochs``, ``learning_rate``). Every other entry, unknown ones included,
# keys the shared stage-1 cache, so a missing name here costs a cache miss, never a wrong reuse.
GRAPH_IGNORED_KEYS = frozenset({
    "checkpoint_dir", "show_progress", "state", "verbose", "gpu_id", "local_rank", "single_spec", "log_wandb",
    "wandb_project", "eval_batch_size", "save_dataset", "save_dataloaders", "dataset_save_path",
    "dataloaders_save_path", "metric_decimal_place", "graph_cache", "graph_cache_dir", "graph_checkpoint",
    "epochs", "learning_rate",
})


def config_digest(config, ignored):
    """Digest of every config entry whose key is not in ``ignored``."""
    items = sorted((k, repr(v)) for k, v in config.final_config_dict.items() if k not in ignored)
    return hashlib.sha256(repr(items).encode()).hexdigest()[:12]


def run_digest(config):
    """Digest of every entry that changes what a run trains: the name of its run folder."""
    return config_digest(config, RUN_ONLY_KEYS)


def graph_digest(config, later_stage_keys):
    """Digest of every config entry that can change stage 1: the key of the shared stage-1 cache."""
    return config_digest(config, GRAPH_IGNORED_KEYS | later_stage_keys)


def with_entries(config, **entries):
    """A shallow copy of ``config`` with ``entries`` set (the original is left as it is)."""
    changed = copy.copy(config)
    changed.final_config_dict = {**config.final_config_dict, **entries}
    return changed


class RunState:
    """Mixin before a RecBole ``Trainer``: the run folder, and the last finished epoch of fit kept in it.

    A subclass says what "the last finished epoch" is by ``_save_latest(epoch_idx, loss)``, and
    calls ``_fit_keeping_latest`` where it would call RecBole's ``fit``.
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.run_dir = self._run_dir(config)
        self.resumed = False  # whether this run continued an earlier one (read by quick_start)
        self._fit_data = None
        self._validates = False

    def _run_dir(self, config):
        return Path(config["checkpoint_dir"]) / f"{config['model']}-{config['dataset']}-{run_digest(config)}"

    def _is_writer(self):
        return self.config["single_spec"] or self.config["local_rank"] == 0

    def _save_latest(self, epoch_idx, loss=None):
        raise NotImplementedError

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        # Only epochs of fit's loop are kept: a direct call (an epoch timer, another stage) writes nothing.
        if train_data is self._fit_data and (not self._validates or (epoch_idx + 1) % self.eval_step):
            self._save_latest(epoch_idx, loss)  # no validation this epoch; otherwise saved after it
        return loss

    def _fit_keeping_latest(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False,
                            callback_fn=None):
        """RecBole's ``fit``, keeping the state of every finished epoch (after its validation, if any)."""
        self._fit_data = train_data
        self._validates = self.eval_step > 0 and bool(valid_data)

        def after_validation(epoch_idx, valid_score):
            self._save_latest(epoch_idx)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        return super().fit(train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                           callback_fn=after_validation)
