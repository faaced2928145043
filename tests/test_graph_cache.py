"""The shared stage-1 cache (``graph_cache``): a run that differs from an earlier one only in
later-stage keys loads that run's LightGCN instead of training it again, and ends with exactly the
model it would have trained itself; a change to anything stage 1 reads trains a new one."""

import pytest
import torch
from conftest import GALREC_BEFORE, GLTA_BEFORE, build_run

from recbole_llm.errors import ConfigValueError

USERS = {"user_id": torch.arange(1, 65)}


# With several torch threads two trainings of the same stage 1 already differ by ~1e-7 (conftest.py).
# Every test trains GLTA or GAL-Rec.
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def base(llm_base):
    return {
        **llm_base, "graph_epochs": 2, "graph_learning_rate": 0.01, "stopping_step": 100,
        # GAL-Rec: one epoch of 2 steps; GLTA: one epoch of each later stage.
        "epochs": 1, "prompt_batch_size": 32, "users_per_epoch": 64, "queue_size": 64,
        "item_alignment_epochs": 1, "item_alignment_batch_size": 64, "user_alignment_epochs": 1,
        "user_alignment_batch_size": 128, "max_history": 10,
    }


def run(name, config_dict):
    # From the papers' stage 1 and its holdout graph (the models' defaults before the text-aware ones); the tests
    # set text themselves.
    config_dict = {**(GALREC_BEFORE if name == "GAL-Rec" else GLTA_BEFORE), **config_dict}
    _, model, trainer, train, valid, _ = build_run(name, config_dict)
    trainer.fit(train, valid, saved=False)
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(USERS)
    return trainer, model, scores


@pytest.mark.parametrize("name, first, second", [
    # Another λ and a different architecture after stage 1 (so model building draws other random numbers).
    ("GAL-Rec", {"lambda1": 0.5, "projection_size": 16}, {"lambda1": 1.0, "projection_size": 32}),
    ("GLTA", {"gllm_head": "tied", "user_alignment_lr": 0.01}, {"gllm_head": "item_tokens", "user_alignment_lr": 0.001}),
])
def test_a_run_differing_in_later_keys_reuses_stage_1_and_ends_as_if_it_trained_it(base, tmp_path, name, first, second):
    shared = {**base, "graph_cache_dir": str(tmp_path / "graph_cache")}
    trainer, *_ = run(name, {**shared, **first, "checkpoint_dir": str(tmp_path / "a")})
    assert trainer.graph_source == "trained" and len(trainer.stage_seconds_per_epoch["graph"]) == 2
    # One file for the LightGCN of all training interactions, one for the holdout graph (lm_holdout_ratio).
    assert len(list((tmp_path / "graph_cache").glob("*-ml-100k-[0-9a-f]*.pth"))) == 1
    assert len(list((tmp_path / "graph_cache").glob("*-ml-100k-holdout-*.pth"))) == 1

    reused, reused_model, reused_scores = run(name, {**shared, **second, "checkpoint_dir": str(tmp_path / "b")})
    assert reused.graph_source == "cache" and reused.stage_seconds_per_epoch["graph"] == []
    assert "holdout_graph" not in reused.stage_seconds_per_epoch  # loaded from the cache too

    # The same run with the cache off trains stage 1 itself: the same graph, the same final scores.
    own, own_model, own_scores = run(name, {**shared, **second, "graph_cache": False, "checkpoint_dir": str(tmp_path / "c")})
    assert own.graph_source == "trained"
    assert torch.equal(reused_model.user_graph_embedding, own_model.user_graph_embedding)
    assert torch.equal(reused_model.item_graph_embedding, own_model.item_graph_embedding)
    assert torch.allclose(reused_scores, own_scores, atol=1e-6)


def test_a_change_stage_1_reads_trains_a_new_graph(base, tmp_path):
    # Stage 1 alone (epochs 0: no GAL-Rec epoch): only the cache is looked at here.
    shared = {**base, "graph_cache_dir": str(tmp_path / "graph_cache"), "epochs": 0}
    for index, changed in enumerate(({}, {"graph_learning_rate": 0.02}, {"seed": 7}, {"n_layers": 2})):
        trainer, *_ = run("GAL-Rec", {**shared, **changed, "checkpoint_dir": str(tmp_path / f"run{index}")})
        assert trainer.graph_source == "trained", changed
    assert len(list((tmp_path / "graph_cache").glob("*-ml-100k-[0-9a-f]*.pth"))) == 4


def test_an_unreadable_cache_file_is_reported_as_the_cache_with_its_fix(base, tmp_path):
    shared = {**base, "graph_cache_dir": str(tmp_path / "graph_cache"), "epochs": 0}  # stage 1 alone
    trainer, *_ = run("GAL-Rec", {**shared, "checkpoint_dir": str(tmp_path / "a")})
    (cached,) = (tmp_path / "graph_cache").glob("*-ml-100k-[0-9a-f]*.pth")
    assert torch.load(cached, weights_only=False)["best_epoch"] in (0, 1)  # the stage-1 epoch it kept
    cached.write_bytes(b"a file damaged by hand")
    with pytest.raises(ConfigValueError, match="stage-1 cache file .* graph_cache=False"):
        run("GAL-Rec", {**shared, "checkpoint_dir": str(tmp_path / "b")})


def test_a_text_stage_1_trains_and_caches_under_its_own_key_and_later_keys_reuse_it(base, tmp_path):
    shared = {**base, "graph_cache_dir": str(tmp_path / "graph_cache"), "graph_loss": "softmax", "softmax_negatives": 64,
              "epochs": 0}  # stage 1 alone
    text = {**shared, "graph_model": "TextLightGCN"}
    ids, *_ = run("GAL-Rec", {**shared, "checkpoint_dir": str(tmp_path / "ids")})
    trained, trained_model, _ = run("GAL-Rec", {**text, "checkpoint_dir": str(tmp_path / "a")})
    assert ids.graph_source == trained.graph_source == "trained"
    assert [type(g).__name__ for g in trained_model.stage1_graphs()] == ["TextLightGCN", "TextLightGCN"]
    # Two keys of each kind: FastLightGCN's and TextLightGCN's, under the same loss; GLTA's files too.
    assert len(list((tmp_path / "graph_cache").glob("stage1-ml-100k-[0-9a-f]*.pth"))) == 2
    assert len(list((tmp_path / "graph_cache").glob("stage1-ml-100k-holdout-*.pth"))) == 2

    # A later-stage key: the same text stage 1, from the cache.
    reused, reused_model, _ = run("GAL-Rec", {**text, "lambda1": 0.5, "projection_size": 32,
                                              "checkpoint_dir": str(tmp_path / "b")})
    assert reused.graph_source == "cache" and "holdout_graph" not in reused.stage_seconds_per_epoch
    assert torch.equal(reused_model.user_graph_embedding, trained_model.user_graph_embedding)
    assert torch.equal(reused_model.item_score_embedding, trained_model.item_score_embedding)

    # The id control of the text row trains nothing: its stage 1 is the FastLightGCN row's.
    control, control_model, _ = run("GAL-Rec", {**text, "id_control": True, "checkpoint_dir": str(tmp_path / "c")})
    assert control.graph_source == "cache" and type(control_model.graph).__name__ == "FastLightGCN"

    # With id_tower stage 1 is the text graph beside an ID graph, and the language model reads both.
    towered, towered_model, towered_scores = run("GAL-Rec", {**text, "id_tower": 0.5, "epochs": 1,
                                                             "checkpoint_dir": str(tmp_path / "d")})
    assert towered.graph_source == "trained" and towered_model.graph.output_size == 2 * towered_model.graph.latent_dim
    assert towered_model.user_graph_embedding.shape[1] == towered_model.item_score_embedding.shape[1] == towered_model.graph.output_size
    assert torch.isfinite(towered_scores).all()


def test_glta_and_galrec_share_a_stage_1_other_than_the_papers(base, tmp_path):
    """A stage 1 other than the papers' trains under random states seeded for it alone, so GLTA's and
    GAL-Rec's with the same entries are one graph: GLTA loads the one GAL-Rec trained, and it is the graph
    GLTA trains itself. (Before, the softmax drew its negatives from states the model's later parts had
    drawn from, and even two GAL-Rec runs differing in a later key trained different graphs.)"""
    shared = {**base, "graph_cache_dir": str(tmp_path / "graph_cache"), "graph_loss": "softmax"}
    trainer, galrec, _ = run("GAL-Rec", {**shared, "epochs": 0, "checkpoint_dir": str(tmp_path / "a")})
    assert trainer.graph_source == "trained"
    (cached,) = (tmp_path / "graph_cache").glob("stage1-ml-100k-[0-9a-f]*.pth")
    reused, reused_model, _ = run("GLTA", {**shared, "checkpoint_dir": str(tmp_path / "b")})
    assert reused.graph_source == "cache" and "holdout_graph" not in reused.stage_seconds_per_epoch
    own, own_model, _ = run("GLTA", {**shared, "graph_cache": False, "checkpoint_dir": str(tmp_path / "c")})
    assert own.graph_source == "trained"
    for model in (reused_model, own_model):
        assert torch.equal(model.user_graph_embedding, galrec.user_graph_embedding)
        assert torch.equal(model.item_graph_embedding, galrec.item_graph_embedding)
