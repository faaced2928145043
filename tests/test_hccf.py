"""HCCF and HCCF+ on ml-100k (HCCF+ with the tiny random Llama): training, scores, checkpoints, views."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import build_run

from recbole_llm.config import Config
from recbole_llm.errors import ConfigValueError
from recbole_llm.model.hccf import HCCF
from recbole_llm.model.hccfplus import HCCFPlus
from recbole_llm.quick_start import load_data_and_model
from recbole_llm.utils import get_model

pytestmark = pytest.mark.slow  # HCCF and HCCF+ train three epochs on ml-100k


@pytest.fixture(scope="module")
def base(llm_base):
    # The tiny Llama embeds the texts: fast, offline (MiniLM: tests/test_text_encoder.py).
    return {**llm_base, "text_encoder": "backbone", "epochs": 3, "train_batch_size": 8192, "stopping_step": 100}


def build(name, config_dict):
    return build_run(name, config_dict)[:5]


@pytest.fixture(scope="module", params=["HCCF", "HCCF+"])
def trained(request, base, tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(tmp_path_factory.mktemp("run"))  # the trainer's tensorboard folder
        config, model, trainer, train, valid = build(request.param, base)
        trainer.fit(train, valid, saved=True)
    return config, model, trainer, train


def test_cli_names_resolve_to_the_plugin_classes(base):
    assert get_model("HCCF") is HCCF
    assert get_model("HCCF+") is HCCFPlus
    config = Config("HCCF+", "ml-100k", config_dict=base)
    assert config["model"] == "HCCFPlus"
    assert (config["hyper_num"], config["text_proj"], config["text_fusion"]) == (128, "linear", "add")


def test_training_loss_falls(trained):
    losses = trained[2].train_loss_dict
    assert len(losses) == 3
    assert losses[2] < losses[0], losses


def test_full_sort_scores_every_item_and_agrees_with_predict(trained):
    _, model, _, train = trained
    users, items = torch.tensor([1, 2, 3, 500]), torch.tensor([5, 6, 7, 8])
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict({model.USER_ID: users})
        pairs = model.predict({model.USER_ID: users, model.ITEM_ID: items})
    assert scores.shape == (4, train._dataset.item_num)
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(pairs, scores[torch.arange(4), items])


def test_checkpoint_reloads_to_identical_scores_without_text_vectors(trained):
    _, model, trainer, _ = trained
    state = torch.load(trainer.saved_model_file, weights_only=False)["state_dict"]
    assert not any(key.endswith(("user_text", "item_text")) for key in state)
    if isinstance(model, HCCFPlus):
        assert "text_fusion.projection.weight" in state
        assert model.text_fusion.item_text.abs().sum() > 0  # the buffers exist, they just are not saved
    _, reloaded, *_ = load_data_and_model(trainer.saved_model_file)
    model.load_state_dict(state)  # the best epoch's weights, as RecBole's evaluate loads them
    model.restore_user_e = model.restore_item_e = None
    users = {model.USER_ID: torch.arange(1, 40)}
    model.eval()
    with torch.no_grad():
        expected = model.full_sort_predict(users)
        torch.testing.assert_close(reloaded.full_sort_predict(users), expected)  # cached in the checkpoint
        reloaded.restore_user_e = reloaded.restore_item_e = None
        torch.testing.assert_close(reloaded.full_sort_predict(users), expected)  # recomputed


def _dense_norm_adj(dataset):
    inter = dataset.inter_matrix(form="coo")
    n_users, n = dataset.user_num, dataset.user_num + dataset.item_num
    a = np.zeros((n, n))
    a[inter.row, n_users + inter.col] = 1.0
    a[n_users + inter.col, inter.row] = 1.0
    d = (a.sum(axis=1) + 1e-7) ** -0.5
    return torch.tensor(d[:, None] * a * d[None, :], dtype=torch.float32)


def test_views_equal_dense_reference_on_ml100k(trained):
    _, model, _, train = trained
    model.eval()
    with torch.no_grad():
        _, _, local_views, global_views = model.forward()
        user_ego, item_ego = model.get_ego_embeddings()
    torch.testing.assert_close(local_views[0], _dense_norm_adj(train._dataset) @ torch.cat([user_ego, item_ego]),
                               atol=1e-5, rtol=1e-4)
    # HCCF+ builds its hypergraphs from the ID embeddings alone, HCCF from its layer-0 embeddings (the same thing).
    user_id, item_id = model.user_embedding.weight, model.item_embedding.weight
    if isinstance(model, HCCFPlus):
        assert not torch.allclose(user_ego, user_id)  # the text is in layer 0 after training
    h_u, h_i = user_id @ model.user_hyper, item_id @ model.item_hyper
    expected = torch.cat([h_u @ F.leaky_relu(h_u.T @ user_ego, model.leaky), h_i @ F.leaky_relu(h_i.T @ item_ego, model.leaky)])
    torch.testing.assert_close(global_views[0], expected, atol=1e-5, rtol=1e-4)


def test_edge_dropout_drops_interactions_in_both_directions(trained):
    model = trained[1]
    model.train()
    full = model.norm_adj_matrix.to_dense()
    dropped = model._dropped_adj().to_dense()
    assert torch.equal(dropped, dropped.T)
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], full[kept] / model.keep_rate)
    assert kept.sum() / (full != 0).sum() == pytest.approx(model.keep_rate, abs=0.01)
    model.eval()
    assert model._dropped_adj() is model.norm_adj_matrix


def test_mlp_projection_and_concat_fusion_train(base):
    config, model, _, train, _ = build("HCCF+", {**base, "text_proj": "mlp", "text_fusion": "concat"})
    model.calculate_loss(next(iter(train))).backward()
    fusion = model.text_fusion
    assert fusion.projection[0].weight.grad.abs().sum() > 0 and fusion.fuse.weight.grad.abs().sum() > 0
    assert model.user_hyper.grad.abs().sum() > 0


def test_bad_config_values_name_the_key(trained):
    config, model, _, train = trained
    for key, value in [("keep_rate", 0), ("hyper_num", 0), ("ssl_reg", "abc"), ("n_layers", 0), ("text_fusion", "mul"),
                       ("text_proj", "conv")]:
        if key.startswith("text") and not isinstance(model, HCCFPlus):
            continue
        bad = copy.deepcopy(config)
        bad[key] = value
        with pytest.raises(ConfigValueError, match=key):
            type(model)(bad, train._dataset)
