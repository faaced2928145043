"""A killed run of a stock RecBole model (or a plugin model on RecBole's Trainer) resumes after its last epoch.

RecBole's Trainer writes a checkpoint only when validation improves, under a timestamped name, and
never reads one back by itself: a run killed at epoch 40 of SASRec starts again at epoch 0. Through
the plugin's runner its training loop also keeps, after every finished epoch,
``<checkpoint_dir>/<model>-<dataset>-<digest>/latest.pth``, the training position of every
plugin trainer (``run_state``): the model and optimizer, RecBole's early-stopping state (best score
and result, evaluations without gain, the best checkpoint's file) and the random state (torch,
numpy, Python, the train loader's shuffling generator), written atomically. Running the same
command again (same digest: every config entry that changes what is trained, the epoch budget
aside) loads it and continues with the next epoch; with one torch thread the resumed run ends in
the same weights as an uninterrupted one (tests/test_resume.py). A run whose training
finished but whose test evaluation was killed is not trained again. After the test evaluation the
folder is removed, so the next run of the same command starts over, as RecBole's does.

Trainers that replace RecBole's ``fit`` (NCL, the decision-tree ones) and single-epoch ones
(``TraditionalTrainer``: Pop, ItemKNN, EASE, ...) are left as they are: there is nothing to resume.
"""

import functools
import shutil

from recbole.trainer import TraditionalTrainer, Trainer

from recbole_llm.trainer.run_state import RunState


class ResumableTraining(RunState):
    """Mixin before a RecBole ``Trainer`` subclass: keeps the position after each epoch and resumes from it."""

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        return self.fit_from(train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                             callback_fn=callback_fn)

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
