"""The id control (``id_control: True``): GLTA and GAL-Rec with text removed everywhere. Stage 1 is the ID
graph with the same loss, and no item or user text is read on the way to any token or prompt, whatever
the other keys ask for."""

import pytest
import torch
from conftest import GALREC_BEFORE, build_run

from recbole_llm.errors import ConfigValueError
from recbole_llm.model.fastlightgcn import FastLightGCN
from recbole_llm.model.ranking_loss import SoftmaxLoss

# Every test builds GLTA or GAL-Rec on the tiny backbone; one trains it.
pytestmark = pytest.mark.slow

# A text stage 1 with the softmax: the id control keeps the loss and drops the text.
TEXT_STAGE1 = {"graph_model": "TextLightGCN", "graph_loss": "softmax", "softmax_tau": 0.2, "softmax_negatives": 64}


@pytest.fixture
def no_text(monkeypatch):
    """Every way text reaches GLTA or GAL-Rec, made to fail: the item texts, their embeddings, the user texts."""
    def refuse(*args, **kwargs):
        raise AssertionError("the id control read text")

    for target in ("recbole_llm.model.graph_stage.text_embeddings", "recbole_llm.model.textlightgcn.text_embeddings",
                   "recbole_llm.model.glta.item_descriptions", "recbole_llm.model.glta.user_texts"):
        monkeypatch.setattr(target, refuse)


def test_galrec_id_control_trains_the_id_graph_with_the_same_loss_and_reads_no_text(llm_base, no_text):
    _, model, *_ = build_run("GAL-Rec", {**llm_base, **TEXT_STAGE1, "use_item_text": True, "id_control": True})
    for graph in model.stage1_graphs():
        assert type(graph) is FastLightGCN
        assert isinstance(graph.mf_loss, SoftmaxLoss) and graph.mf_loss.tau == 0.2 and graph.mf_loss.n_negatives == 64
    # Item tokens are P_i(E_i) alone: no text projector, no text embeddings.
    assert not model.use_item_text and model.encoder.text_projector is None
    assert not hasattr(model, "item_text_embedding")


def test_the_id_control_keeps_the_id_graphs_users(llm_base, no_text):
    """With ``id_tower_users: mean`` the model's ID graph has no user table; its control's ID graph neither,
    so the control differs from the model in the text alone."""
    entries = {**llm_base, **TEXT_STAGE1, "id_tower": 0.5, "id_tower_users": "mean", "id_control": True}
    _, model, *_ = build_run("GAL-Rec", entries)
    assert type(model.graph) is FastLightGCN and model.graph.mean_users and not hasattr(model.graph, "user_embedding")


def test_glta_id_control_has_no_stage_2_and_no_user_texts(llm_base, no_text, tmp_path):
    config = {**llm_base, **TEXT_STAGE1, "use_profile": True, "use_prediction": True, "id_control": True,
              "checkpoint_dir": str(tmp_path), "graph_epochs": 1, "user_alignment_epochs": 1,
              "user_alignment_batch_size": 256, "max_history": 10}
    _, model, trainer, train, valid, test = build_run("GLTA", config)
    assert type(model.graph) is FastLightGCN and isinstance(model.graph.mf_loss, SoftmaxLoss)
    assert not (model.item_alignment or model.use_profile or model.use_prediction) and model.descriptions is None
    trainer.fit(train, valid, saved=False)
    assert trainer.stage_seconds_per_epoch["item_alignment"] == []
    assert len(trainer.stage_seconds_per_epoch["user_alignment"]) == 1
    assert set(trainer.evaluate(test, load_best_model=False)) >= {"ndcg@10"}


def test_id_control_must_be_a_boolean(llm_base):
    with pytest.raises(ConfigValueError, match="id_control='yes' is not a boolean. Fix:"):
        build_run("GAL-Rec", {**llm_base, "id_control": "yes"})


def test_without_the_control_the_text_stage_1_and_item_text_are_there(llm_base):
    _, model, *_ = build_run("GAL-Rec", {**llm_base, **GALREC_BEFORE, **TEXT_STAGE1})  # with a holdout graph
    assert type(model.graph).__name__ == "TextLightGCN" and type(model.holdout_graph).__name__ == "TextLightGCN"
    assert model.use_item_text and model.encoder.text_projector is not None
    # The text stage 1's scores are its own: cosine / softmax_tau, as the graph alone ranks.
    users = torch.arange(1, 9)
    model.freeze_graph()
    scores = model.stage1_scores(users)
    assert torch.allclose(scores, model.graph.full_sort_predict({"user_id": users}).view(len(users), -1), atol=1e-5)
    assert scores.abs().max() <= 1 / 0.2 + 1e-4
