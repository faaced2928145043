"""A killed run of a stock RecBole model (or a plugin model on RecBole's Trainer) resumes after its last epoch.

RecBole's Trainer writes a checkpoint only when validation improves, under a timestamped name, and
never reads one back by itself: a run killed at epoch 40 of SASRec starts again at epoch 0. Through
the plugin's runner its training loop also keeps, after every finished epoch,
``<checkpoint_dir>/<model>-<dataset>-<digest>/latest.pth``: the model and optimizer, RecBole's
early-stopping state (best score and result, evaluations without gain, the best checkpoint's file)
and the random state (torch, numpy, Python, the train loader's shuffling generator), written
atomically. Running the same command again (same digest: every config entry that changes what is
trained, as for GLTA) loads it and continues with the next epoch; with one torch thread the resumed
run ends in the same weights as an uninterrupted one (tests/test_resume.py). A run whose training
finished but whose test evaluation was killed is not trained again. After the test evaluation the
folder is removed, so the next run of the same command starts over, as RecBole's does.

Trainers that replace RecBole's ``fit`` (NCL, the decision-tree ones) and single-epoch ones
(``TraditionalTrainer``: Pop, ItemKNN, EASE, ...) are left as they are: there is nothing to resume.
"""

import functools
import shutil

from recbole.trainer import TraditionalTrainer, Trainer

from recbole_llm.checkpoint import load_checkpoint, random_states, restore_random_states
from recbole_llm.helpers import atomic_save
from recbole_llm.trainer.run_state import RunState


class ResumableTraining(RunState):
    """Mixin before a RecBole ``Trainer`` subclass: saves the state after each epoch and resumes from it."""

    @property
    def latest_file(self):
        return self.run_dir / "latest.pth"

    def _save_latest(self, epoch_idx, loss=None, finished=False):
        if not self._is_writer():
            return
        losses = dict(self.train_loss_dict)
        if loss is not None:  # saved from inside _train_epoch, before fit records the epoch's loss
            losses[epoch_idx] = sum(loss) if isinstance(loss, tuple) else loss
        atomic_save({
            "epoch": epoch_idx,
            "finished": finished,
            "cur_step": self.cur_step,
            "best_valid_score": self.best_valid_score,
            "best_valid_result": self.best_valid_result,
            "best_file": self.saved_model_file,
            "train_loss_dict": losses,
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
            "rng": random_states(loader=getattr(self._fit_data, "generator", None)),
        }, self.latest_file)

    def _load_latest(self):
        state = load_checkpoint(self.latest_file, map_location=self.device, fix=(
            "delete that file: the same command then trains this run again from its first epoch."))
        self.model.load_state_dict(state["state_dict"])
        self.model.load_other_parameter(state["other_parameter"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_epoch = state["epoch"] + 1
        self.cur_step = state["cur_step"]
        self.best_valid_score = state["best_valid_score"]
        self.best_valid_result = state["best_valid_result"]
        self.saved_model_file = state["best_file"]
        self.train_loss_dict = dict(state["train_loss_dict"])
        restore_random_states(state["rng"], loader=getattr(self._fit_data, "generator", None))
        self.resumed = True
        self.logger.info(f"Resuming from {self.latest_file}: epoch {self.start_epoch} of {self.epochs}"
                         + (" (training had finished)" if state["finished"] else ""))
        return state["finished"]

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._fit_data = train_data
        if self.latest_file.is_file() and self._load_latest():
            return self.best_valid_score, self.best_valid_result
        result = self._fit_keeping_latest(train_data, valid_data, verbose=verbose, saved=saved,
                                          show_progress=show_progress, callback_fn=callback_fn)
        if self.train_loss_dict:
            self._save_latest(max(self.train_loss_dict), finished=True)
        return result

    def discard_resume_state(self):
        """Remove the run's resume folder (after its test evaluation): the next run starts over."""
        if self._is_writer():
            shutil.rmtree(self.run_dir, ignore_errors=True)


@functools.cache
def resumable(trainer_class):
    """``trainer_class`` with ``ResumableTraining`` mixed in, or itself where there is nothing to resume.

    One derived class per trainer class, so runs in one process share it (``isinstance`` and
    ``type(a) is type(b)`` hold across runs).
    """
    if (not issubclass(trainer_class, Trainer) or issubclass(trainer_class, (TraditionalTrainer, RunState))
            or trainer_class.fit is not Trainer.fit):
        return trainer_class
    return type(trainer_class.__name__, (ResumableTraining, trainer_class),
                {"__module__": __name__, "__doc__": trainer_class.__doc__})
