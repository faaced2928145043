"""The runner trains stock RecBole models on this stack, saves and reloads their best checkpoint."""

import gc
import weakref

import pytest
from recbole.trainer import Trainer

import recbole_llm.quick_start as quick_start
from recbole_llm.quick_start import load_data_and_model, run_recbole_llm

# RecBole's Random model scores NDCG@10 0.0065 on ml-100k (measured); two epochs of each model clear twice that.
STOCK_MODELS = {
    "BPR": 0.013,
    "LightGCN": 0.05,
    "EASE": 0.2,
    "MultiVAE": 0.013,
    "SASRec": 0.013,
}


# Stock SASRec takes ~200 s an epoch on ml-100k on 2 cores; shorter sequences and one layer take ~25 s
# on one thread, and one epoch already tests at NDCG@10 0.031 (0.048 after two).
SMALLER = {"SASRec": {"MAX_ITEM_LIST_LENGTH": 10, "n_layers": 1, "inner_size": 64, "learning_rate": 0.005, "epochs": 1}}


@pytest.fixture
def quiet(tmp_path, monkeypatch):
    """Keep RecBole's log/ and saved/ folders out of the repo."""
    monkeypatch.chdir(tmp_path)
    return {"epochs": 2, "show_progress": False, "checkpoint_dir": str(tmp_path / "saved"), "state": "WARNING"}


# BPR in the quick check; the others train for more than a few seconds.
@pytest.mark.parametrize("model", [m if m == "BPR" else pytest.param(m, marks=pytest.mark.slow) for m in STOCK_MODELS])
def test_stock_model_trains_and_evaluates(model, quiet):
    result = run_recbole_llm(model, "ml-100k", config_dict={**quiet, **SMALLER.get(model, {})})
    ndcg = result["test_result"]["ndcg@10"]
    assert STOCK_MODELS[model] < ndcg <= 1.0
    assert set(result["test_result"]) == {"recall@10", "mrr@10", "ndcg@10", "hit@10", "precision@10"}


def test_best_checkpoint_reloads_to_identical_scores(quiet):
    result = run_recbole_llm("LightGCN", "ml-100k", config_dict=quiet, saved=True)
    assert len(result["train_seconds_per_epoch"]) == 2 and len(result["valid_seconds_per_epoch"]) == 2
    assert result["best_epoch"] in (0, 1) and result["test_seconds"] > 0
    assert result["params_trainable"] == result["params_total"] == 64 * (943 + 1682 + 2)
    config, model, _, _, _, test_data = load_data_and_model(result["saved_model_file"])
    reloaded = Trainer(config, model).evaluate(test_data, load_best_model=False)
    assert dict(reloaded) == dict(result["test_result"])


def test_cli_overrides_beat_config_dict(quiet):
    result = run_recbole_llm(
        "BPR", "ml-100k", config_dict={**quiet, "topk": [10]}, cmd_args=["--topk=[5]", "--metrics=['NDCG']", "--valid_metric=NDCG@5"], saved=False
    )
    assert set(result["test_result"]) == {"ndcg@5"}


def test_finished_run_frees_its_trainer_and_model(quiet, monkeypatch):
    # The trainer sits in reference cycles, so only a garbage collection frees it; the runner runs
    # one before it returns (and, under DDP, before it leaves the process group). Automatic
    # collection is off here so that only the runner's can free it.
    built = []
    get_trainer = quick_start.get_trainer

    def recording_get_trainer(*args):
        trainer_class = get_trainer(*args)

        def build(config, model):
            trainer = trainer_class(config, model)
            built.extend([weakref.ref(trainer), weakref.ref(model)])
            return trainer
        return build

    monkeypatch.setattr(quick_start, "get_trainer", recording_get_trainer)
    gc.disable()
    try:
        run_recbole_llm("BPR", "ml-100k", config_dict={**quiet, "epochs": 1})
        assert len(built) == 2 and all(ref() is None for ref in built)
    finally:
        gc.enable()
