"""A killed run of a model on RecBole's Trainer (stock BPR here) resumes after its last finished epoch
and ends where the uninterrupted run ends; a finished run is not resumed by the next one."""

import io
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from recbole.data import data_preparation
from recbole.trainer import Trainer
from recbole.utils import ModelType

from recbole_llm.checkpoint import own_random_states, random_states, restore_random_states
from recbole_llm.config import Config
from recbole_llm.quick_start import run_recbole_llm
from recbole_llm.trainer import ResumableTraining, resumable
from recbole_llm.trainer.graph_stage_trainer import Stage1Trainer
from recbole_llm.utils import create_dataset, get_model, get_trainer

# Four epochs, validated after epochs 1 and 3 (0-based), so the last save before a kill at epoch 2
# follows a validation and before a kill at epoch 3 it follows a plain training epoch.
BASE = {"epochs": 4, "eval_step": 2, "stopping_step": 10, "learning_rate": 0.01, "train_batch_size": 4096,
        "show_progress": False, "state": "WARNING", "seed": 2020}


class Killed(Exception):
    """Stands for the signal that stops a run."""


# One torch thread, so that two trainings of the same epochs agree to the last bit (conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def run(checkpoint_dir):
    return run_recbole_llm("BPR", "ml-100k", config_dict={**BASE, "checkpoint_dir": str(checkpoint_dir)})


def best_weights(result):
    return torch.load(result["saved_model_file"], weights_only=False)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(one_thread, tmp_path_factory):
    result = run(tmp_path_factory.mktemp("uninterrupted"))
    return result, best_weights(result)


def kill_at_epoch(monkeypatch, epoch, trainer_class=Trainer):
    train_epoch = trainer_class._train_epoch

    def killed(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == epoch:
            raise Killed
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(trainer_class, "_train_epoch", killed)


@pytest.mark.parametrize("kill_epoch", [2, 3])
@pytest.mark.slow
def test_killed_run_resumes_and_ends_like_an_uninterrupted_one(tmp_path, monkeypatch, uninterrupted, kill_epoch):
    expected, expected_weights = uninterrupted
    with monkeypatch.context() as patch:
        kill_at_epoch(patch, kill_epoch)
        with pytest.raises(Killed):
            run(tmp_path)
    assert len(list(tmp_path.glob("BPR-ml-100k-*/latest.pth"))) == 1

    result = run(tmp_path)
    assert result["resumed"]
    assert len(result["train_seconds_per_epoch"]) == 4 - kill_epoch  # only the epochs after the kill
    assert result["best_epoch"] == expected["best_epoch"] == 3
    assert result["best_valid_score"] == expected["best_valid_score"]
    assert result["test_result"] == expected["test_result"]
    for name, weight in best_weights(result).items():
        assert torch.equal(weight, expected_weights[name]), name
    assert not list(tmp_path.glob("BPR-ml-100k-*")), "a complete run leaves no resume state behind"


@pytest.mark.slow
def test_run_killed_during_its_test_is_not_trained_again(tmp_path, monkeypatch, uninterrupted):
    expected, _ = uninterrupted

    evaluate = Trainer.evaluate

    def killed_in_test(self, eval_data, load_best_model=True, *args, **kwargs):
        if load_best_model:  # the test evaluation; validation passes False
            raise Killed
        return evaluate(self, eval_data, load_best_model, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "evaluate", killed_in_test)
        with pytest.raises(Killed):
            run(tmp_path)
    result = run(tmp_path)
    assert result["resumed"] and result["train_seconds_per_epoch"] == []
    assert result["best_epoch"] == expected["best_epoch"]
    assert result["test_result"] == expected["test_result"]


@pytest.mark.slow
def test_a_copied_checkpoint_folder_resumes_where_it_lies(tmp_path, monkeypatch, uninterrupted):
    """A run writes only under its own checkpoint_dir, even when it resumes a copy of another run's folder."""
    expected, expected_weights = uninterrupted
    with monkeypatch.context() as patch:
        kill_at_epoch(patch, 3)
        with pytest.raises(Killed):
            run(tmp_path / "original")
    shutil.copytree(tmp_path / "original", tmp_path / "copy")
    before = {path: path.read_bytes() for path in (tmp_path / "original").rglob("*") if path.is_file()}

    result = run(tmp_path / "copy")
    assert result["resumed"] and result["test_result"] == expected["test_result"]
    assert Path(result["saved_model_file"]).parent == tmp_path / "copy"
    for name, weight in best_weights(result).items():
        assert torch.equal(weight, expected_weights[name]), name
    after = {path: path.read_bytes() for path in (tmp_path / "original").rglob("*") if path.is_file()}
    assert after == before, "the original folder is left as the killed run left it"


def test_random_states_survive_a_weights_only_load():
    """Training positions are read back with torch.load(weights_only=True): what they carry must load that way."""
    generator = torch.Generator().manual_seed(3)
    buffer = io.BytesIO()
    torch.save(random_states(loader=generator), buffer)
    draws = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=generator))
    buffer.seek(0)
    restore_random_states(torch.load(buffer, weights_only=True), loader=generator)
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=generator))
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]
    assert torch.equal(draws[3], again[3])


def test_own_random_states_seed_the_block_and_give_the_callers_back():
    torch.manual_seed(1)
    np.random.seed(1)
    before = (torch.rand(3), np.random.rand(3))
    torch.manual_seed(1)
    np.random.seed(1)
    with own_random_states(7):
        inside = (torch.rand(3), np.random.rand(3))
    after = (torch.rand(3), np.random.rand(3))
    torch.manual_seed(7)
    np.random.seed(7)
    assert torch.equal(inside[0], torch.rand(3)) and np.array_equal(inside[1], np.random.rand(3))
    assert torch.equal(after[0], before[0]) and np.array_equal(after[1], before[1])  # as if it drew nothing


@pytest.mark.slow
def test_complete_run_is_not_resumed(uninterrupted):
    """The same command again, in the folder where the uninterrupted run finished, trains anew."""
    finished, _ = uninterrupted
    assert not finished["resumed"]
    assert not run(Path(finished["saved_model_file"]).parent)["resumed"]


def test_which_trainers_resume():
    general, traditional = ModelType.GENERAL, ModelType.TRADITIONAL
    assert issubclass(get_trainer(general, "BPR"), ResumableTraining)
    assert issubclass(get_trainer(general, "FastLightGCN"), ResumableTraining)
    assert issubclass(get_trainer(ModelType.SEQUENTIAL, "SASRec"), ResumableTraining)
    assert get_trainer(general, "BPR").__name__ == "Trainer"
    assert not issubclass(get_trainer(general, "GLTA"), ResumableTraining)  # its own stage checkpoints
    assert not issubclass(get_trainer(traditional, "EASE"), ResumableTraining)  # one epoch, nothing to resume
    assert not issubclass(get_trainer(general, "NCL"), ResumableTraining)  # replaces RecBole's fit
    assert resumable(resumable(Trainer)).__mro__.count(ResumableTraining) == 1
    assert get_trainer(general, "BPR") is get_trainer(general, "LightGCN")  # one derived class per trainer class


def test_an_epoch_outside_fit_writes_no_resume_state(tmp_path):
    """An epoch timer (benchmarks/lightgcn_speed.py) calls _train_epoch directly; it must time no checkpoint write."""
    config = Config("BPR", "ml-100k", config_dict={**BASE, "checkpoint_dir": str(tmp_path)})
    train, _, _ = data_preparation(config, create_dataset(config))
    trainer = get_trainer(config["MODEL_TYPE"], "BPR")(config, get_model("BPR")(config, train._dataset))
    trainer._train_epoch(train, 0)
    assert not trainer.latest_file.exists()


# GLTA and GAL-Rec with the tiny random Llama: stage 1 and 2 of one epoch each, a last stage of three
# epochs validated after the second; the kill comes at its third epoch, so the run resumes from the
# checkpoint written after that validation.
STAGED = {
    "GLTA": {"graph_epochs": 1, "item_alignment_epochs": 1, "item_alignment_batch_size": 64,
             "user_alignment_epochs": 3, "user_alignment_batch_size": 64, "max_history": 10, "llm_num_layers": None},
    "GAL-Rec": {"graph_epochs": 1, "epochs": 3, "prompt_batch_size": 32, "users_per_epoch": 64, "queue_size": 64,
                "learning_rate": 0.001, "llm_num_layers": None},
}
# GAL-Rec's next-item objective draws a cut of every user's sequence each step, from the same random state.
STAGED["GAL-Rec next_item"] = {**STAGED["GAL-Rec"], "lm_objective": "next_item", "eval_args": {
    "split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}}


def run_staged(model, checkpoint_dir, tiny_llm_path, **entries):
    config = {**STAGED[model], **entries, "llm_path": tiny_llm_path, "llm_cache_dir": str(checkpoint_dir / "cache"),
              "checkpoint_dir": str(checkpoint_dir), "eval_step": 1, "stopping_step": 10, "graph_learning_rate": 0.01,
              "show_progress": False, "state": "WARNING", "seed": 2020}
    return run_recbole_llm(model.split()[0], "ml-100k", config_dict=config)


@pytest.mark.parametrize("model", STAGED)
@pytest.mark.slow
def test_killed_multi_stage_run_ends_like_an_uninterrupted_one(model, tmp_path, monkeypatch, tiny_llm_path):
    """The last stage draws its targets and neighbours from random states the checkpoint must carry."""
    expected = run_staged(model, tmp_path / "uninterrupted", tiny_llm_path)
    name = model.split()[0]
    trainer_class = get_trainer(ModelType.GENERAL, name.replace("-", ""))
    with monkeypatch.context() as patch:
        kill_at_epoch(patch, 2, trainer_class)
        with pytest.raises(Killed):
            run_staged(model, tmp_path / "killed", tiny_llm_path)
    # Every file a run resumes from (positions of every stage, the stage-1 cache) loads weights_only.
    killed = tmp_path / "killed"
    run_folder = f"{name.replace('-', '')}-ml-100k-*"
    left = [path for path in [*killed.glob(f"{run_folder}/*.pth"), *killed.glob("graph_cache/*.pth")]
            if "best" not in path.name]
    assert {path.name for path in left} >= {"stage1_graph.pth", trainer_class.LATEST_FILE}
    assert any(path.parent.name == "graph_cache" for path in left)
    for path in left:
        torch.load(path, weights_only=True)
    result = run_staged(model, tmp_path / "killed", tiny_llm_path)
    assert result["resumed"]
    assert result["best_valid_score"] == expected["best_valid_score"]
    assert result["test_result"] == expected["test_result"]


@pytest.mark.slow
def test_run_killed_in_stage_1_continues_its_graph_and_ends_like_an_uninterrupted_one(tmp_path, monkeypatch,
                                                                                    tiny_llm_path):
    """Stage 1 keeps its position after every epoch: a run killed in its second graph epoch resumes that graph
    at its second epoch, not its first, and ends where the uninterrupted run ends. Under the softmax, whose
    stage 1 trains on random states of its own, which the position restores (the papers' BPR stage 1 keeps
    its position the same way, on the run's states)."""
    three = {"graph_epochs": 3, "epochs": 1, "graph_loss": "softmax"}
    expected = run_staged("GAL-Rec", tmp_path / "uninterrupted", tiny_llm_path, **three)
    with monkeypatch.context() as patch:
        kill_at_epoch(patch, 1, Stage1Trainer)
        with pytest.raises(Killed):
            run_staged("GAL-Rec", tmp_path / "killed", tiny_llm_path, **three)
    (latest,) = (tmp_path / "killed").glob("GALRec-ml-100k-*/stage1_graph_latest.pth")
    assert torch.load(latest, weights_only=True)["epoch"] == 0
    trained = []
    train_epoch = Stage1Trainer._train_epoch

    def counted(self, train_data, epoch_idx, *args, **kwargs):
        trained.append(epoch_idx)
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(Stage1Trainer, "_train_epoch", counted)
    result = run_staged("GAL-Rec", tmp_path / "killed", tiny_llm_path, **three)
    assert trained[:2] == [1, 2]  # the graph went on from its second epoch (then the holdout graph from its first)
    assert not list((tmp_path / "killed").glob("GALRec-ml-100k-*/stage1_*_latest.pth"))  # stage 1 is kept whole
    assert result["resumed"]
    assert result["best_valid_score"] == expected["best_valid_score"]
    assert result["test_result"] == expected["test_result"]
