"""The softmax ranking loss of the LightGCN family, and TextLightGCN (text in, LightGCN, softmax)."""

import pytest
import torch
import torch.nn.functional as F
from recbole.data import data_preparation
from recbole.utils import init_seed

from recbole_llm.config import Config
from recbole_llm.errors import ConfigValueError
from recbole_llm.model.fastlightgcn import FastLightGCN
from recbole_llm.model.ranking_loss import SoftmaxLoss
from recbole_llm.model.textlightgcn import TextLightGCN
from recbole_llm.quick_start import run_recbole_llm
from recbole_llm.utils import create_dataset


def _cosine_logits(user_e, item_e, tau):
    return F.normalize(user_e, dim=1) @ F.normalize(item_e, dim=1).T / tau


def test_full_softmax_is_cross_entropy_over_every_real_item():
    torch.manual_seed(0)
    user_e, item_e = torch.randn(4, 8), torch.randn(7, 8)
    pos = torch.tensor([1, 6, 3, 3])
    loss = SoftmaxLoss(n_items=7, n_negatives=0, tau=0.2)(user_e, pos, None, item_e)
    logits = _cosine_logits(user_e, item_e, 0.2)[:, 1:]  # item 0 is RecBole's padding
    torch.testing.assert_close(loss, F.cross_entropy(logits, pos - 1))
    assert SoftmaxLoss(7, 6, 0.2).full_catalogue() and not SoftmaxLoss(7, 5, 0.2).full_catalogue()


def test_sampled_softmax_masks_a_negative_that_is_the_rows_positive():
    torch.manual_seed(0)
    user_e, item_e = torch.randn(3, 8), torch.randn(50, 8)
    pos = torch.tensor([1, 2, 4])
    torch.manual_seed(1)
    loss = SoftmaxLoss(n_items=50, n_negatives=20, tau=0.5)(user_e, pos, None, item_e)
    torch.manual_seed(1)
    negatives = torch.randint(1, 50, (20,)).tolist()  # the loss's own draw
    assert any(n in negatives for n in pos.tolist())  # the draw does hit a positive
    logits = _cosine_logits(user_e, item_e, 0.5)
    expected = []
    for row, positive in enumerate(pos.tolist()):
        kept = [n for n in negatives if n != positive]
        row_logits = torch.cat([logits[row, positive].view(1), logits[row, kept]])
        expected.append(-torch.log_softmax(row_logits, dim=0)[0])
    torch.testing.assert_close(loss, torch.stack(expected).mean())


@pytest.mark.parametrize("n_items", [24, 50])  # fewer item rows than the rows read, or more: normalised before or after
def test_sampled_softmax_gradients_are_those_of_the_per_row_cross_entropy(n_items):
    """The loss's own backward (SampledSoftmaxNLL) gives what autograd gives through the per-row formula, negatives
    drawn twice and hitting positives included."""
    torch.manual_seed(0)
    user_e = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    item_e = torch.randn(n_items, 8, dtype=torch.float64, requires_grad=True)
    pos = torch.tensor([1, 2, 4, 2, 5])
    torch.manual_seed(1)
    loss = SoftmaxLoss(n_items=n_items, n_negatives=20, tau=0.3)(user_e, pos, None, item_e)
    torch.manual_seed(1)
    negatives = torch.randint(1, n_items, (20,)).tolist()
    assert len(set(negatives)) < 20 and any(n in negatives for n in pos.tolist())
    logits = _cosine_logits(user_e, item_e, 0.3)
    expected = torch.stack([-torch.log_softmax(torch.cat([logits[row, positive].view(1),
                                                          logits[row, [n for n in negatives if n != positive]]]), dim=0)[0]
                            for row, positive in enumerate(pos.tolist())]).mean()
    torch.testing.assert_close(loss, expected)
    for got, want in zip(torch.autograd.grad(loss, (user_e, item_e)), torch.autograd.grad(expected, (user_e, item_e))):
        torch.testing.assert_close(got, want)


@pytest.fixture(scope="module")
def ml100k_train(tmp_path_factory):
    config = Config("FastLightGCN", "ml-100k", config_dict={"state": "WARNING"})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    return train_data._dataset


def test_an_unknown_graph_loss_is_a_config_error(ml100k_train):
    config = Config("FastLightGCN", "ml-100k", config_dict={"state": "WARNING", "graph_loss": "hinge"})
    with pytest.raises(ConfigValueError, match="graph_loss='hinge'.*Fix: set graph_loss to one of bpr, softmax"):
        FastLightGCN(config, ml100k_train)


def test_softmax_lightgcn_scores_by_cosine(ml100k_train):
    config = Config("FastLightGCN", "ml-100k", config_dict={"state": "WARNING", "graph_loss": "softmax"})
    model = FastLightGCN(config, ml100k_train)
    user_e, item_e = model.forward()
    torch.testing.assert_close(user_e[1:].norm(dim=1), torch.ones(model.n_users - 1))
    torch.testing.assert_close(item_e[1:].norm(dim=1), torch.ones(model.n_items - 1))
    bpr = FastLightGCN(Config("FastLightGCN", "ml-100k", config_dict={"state": "WARNING"}), ml100k_train)
    assert not torch.allclose(bpr.forward()[1][1:].norm(dim=1), torch.ones(bpr.n_items - 1))


def test_lightgcn_users_as_the_mean_of_their_items_rows(ml100k_train):
    """FastLightGCN with ``id_tower_users: mean`` (the id control of a model whose ID graph has such users): no
    user table, a user's layer 0 the mean of their training items' rows, the same item table as without."""
    entries = {"state": "WARNING", "graph_loss": "softmax"}
    init_seed(2020, True)
    plain = FastLightGCN(Config("FastLightGCN", "ml-100k", config_dict=entries), ml100k_train)
    init_seed(2020, True)
    model = FastLightGCN(Config("FastLightGCN", "ml-100k", config_dict={**entries, "id_tower_users": "mean"}), ml100k_train)
    assert not hasattr(model, "user_embedding") and [name for name, _ in model.named_parameters()] == ["item_embedding.weight"]
    torch.testing.assert_close(model.item_embedding.weight, plain.item_embedding.weight)
    matrix = ml100k_train.inter_matrix(form="csr")
    ego = model.get_ego_embeddings()
    for user in (1, 5, 40):
        items = sorted(set(matrix.indices[matrix.indptr[user]:matrix.indptr[user + 1]].tolist()))
        torch.testing.assert_close(ego[user], model.item_embedding.weight[items].mean(dim=0))
    interaction = {model.USER_ID: torch.tensor([1, 2, 3]), model.ITEM_ID: torch.tensor([4, 5, 6]),
                   model.NEG_ITEM_ID: torch.tensor([7, 8, 9])}
    torch.testing.assert_close(model.layer0_rows(interaction[model.USER_ID], ())[0], ego[[1, 2, 3]])
    model.calculate_loss(interaction).backward()
    assert model.item_embedding.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigValueError, match="id_tower_users='items' is not supported.*Fix: set id_tower_users to one of id, mean"):
        FastLightGCN(Config("FastLightGCN", "ml-100k", config_dict={**entries, "id_tower_users": "items"}), ml100k_train)
    # A subclass with users of its own refuses it in words, not with a missing table.
    from recbole_llm.model.lightgcnplus import LightGCNPlus

    class OwnUsers(FastLightGCN):
        def get_ego_embeddings(self):
            return super().get_ego_embeddings()

    with pytest.raises(ConfigValueError, match="OwnUsers builds its users' embeddings its own way. Fix: leave id_tower_users at id"):
        OwnUsers(Config("FastLightGCN", "ml-100k", config_dict={**entries, "id_tower_users": "mean"}), ml100k_train)
    assert LightGCNPlus.get_ego_embeddings is not FastLightGCN.get_ego_embeddings


@pytest.mark.slow
def test_softmax_lightgcn_trains_through_the_runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quiet = {"epochs": 2, "show_progress": False, "checkpoint_dir": str(tmp_path / "saved"), "state": "WARNING",
             "graph_loss": "softmax"}
    result = run_recbole_llm("FastLightGCN", "ml-100k", config_dict=quiet)
    assert result["test_result"]["ndcg@10"] > 0.05  # the stock-model threshold in test_runner.py


def _text_model(tiny_llm_path, tmp_path, dataset, **entries):
    config = Config("TextLightGCN", "ml-100k", config_dict={
        "state": "WARNING", "text_encoder": "backbone", "llm_path": tiny_llm_path, "llm_cache_dir": str(tmp_path),
        **entries})
    init_seed(config["seed"], config["reproducibility"])
    return TextLightGCN(config, dataset)


def test_text_lightgcn_has_no_id_tables_and_users_are_the_mean_of_their_items(tiny_llm_path, tmp_path, ml100k_train):
    model = _text_model(tiny_llm_path, tmp_path, ml100k_train)
    names = [name for name, _ in model.named_parameters()]
    assert names and all(name.startswith("text_mlp.") for name in names)
    matrix = ml100k_train.inter_matrix(form="csr")
    user = 5
    items = sorted(set(matrix.indices[matrix.indptr[user]:matrix.indptr[user + 1]].tolist()))
    # A user's layer 0 is the MLP of the mean text of their training items (computed as the mean of the
    # items' first-layer outputs: the same function).
    layer0 = model.get_ego_embeddings()
    torch.testing.assert_close(layer0[user], model.text_mlp(model.item_text[items].mean(dim=0)))
    torch.testing.assert_close(layer0[model.n_users + 7], model.text_mlp(model.item_text[7]))
    assert model.mf_loss.cosine  # TextLightGCN.yaml: the softmax loss by default

    users = torch.tensor([1, 2, 3])
    pos, neg = torch.tensor([4, 5, 6]), torch.tensor([7, 8, 9])
    interaction = {model.USER_ID: users, model.ITEM_ID: pos, model.NEG_ITEM_ID: neg}
    model.calculate_loss(interaction).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_text_lightgcn_id_sides_add_their_tables(tiny_llm_path, tmp_path, ml100k_train):
    model = _text_model(tiny_llm_path, tmp_path, ml100k_train, text_user_side="id", text_item_id=True)
    assert model.user_embedding.weight.shape == (model.n_users, model.latent_dim)
    assert model.item_embedding.weight.shape == (model.n_items, model.latent_dim)
    layer0 = model.get_ego_embeddings()
    torch.testing.assert_close(layer0[: model.n_users], model.user_embedding.weight)
    with pytest.raises(ConfigValueError, match="text_user_side='both'"):
        _text_model(tiny_llm_path, tmp_path, ml100k_train, text_user_side="both")


@pytest.mark.slow
def test_text_lightgcn_trains_and_evaluates_on_minilm_through_the_runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = {"epochs": 2, "show_progress": False, "checkpoint_dir": str(tmp_path / "saved"), "state": "WARNING",
           "llm_cache_dir": str(tmp_path / "cache")}
    result = run_recbole_llm("TextLightGCN", "ml-100k", config_dict=run)
    assert result["test_result"]["ndcg@10"] > 0.05  # the stock-model threshold in test_runner.py


def test_id_tower_is_a_separate_id_graph_scored_by_the_mixed_cosines(tiny_llm_path, tmp_path, ml100k_train):
    model = _text_model(tiny_llm_path, tmp_path, ml100k_train, id_tower=0.3)
    assert model.user_embedding.weight.shape == (model.n_users, model.latent_dim) and model.output_size == 2 * model.latent_dim
    (text_users, text_items), (id_users, id_items) = model.towers()
    # The text graph is the model without the tower (same MLP weights); the ID graph is LightGCN over the tables.
    alone = _text_model(tiny_llm_path, tmp_path, ml100k_train)
    alone.text_mlp.load_state_dict(model.text_mlp.state_dict())
    torch.testing.assert_close(text_items, alone.forward()[1])
    same = {"softmax_tau": model.mf_loss.tau, "softmax_negatives": model.mf_loss.n_negatives,
            "reg_weight": model.reg_weight}
    ids = FastLightGCN(Config("FastLightGCN", "ml-100k", config_dict={"state": "WARNING", "graph_loss": "softmax", **same}),
                       ml100k_train)
    ids.load_state_dict({"user_embedding.weight": model.user_embedding.weight,
                         "item_embedding.weight": model.item_embedding.weight})
    torch.testing.assert_close(id_users, ids.forward()[0])
    # The score mixes the two cosines; forward's wide embeddings give it as one dot product.
    users = torch.tensor([1, 2, 3])
    mixed = 0.7 * text_users[users] @ text_items.T + 0.3 * id_users[users] @ id_items.T
    torch.testing.assert_close(model.full_sort_predict({model.USER_ID: users}).view(3, -1), mixed / model.mf_loss.tau)
    # Each graph learns from its own loss, L2 term included: the loss is the two models' losses (the text
    # graph's drawing its softmax negatives first), and both get gradients.
    interaction = {model.USER_ID: users, model.ITEM_ID: torch.tensor([4, 5, 6]), model.NEG_ITEM_ID: torch.tensor([7, 8, 9])}
    torch.manual_seed(0)
    apart = alone.calculate_loss(interaction) + ids.calculate_loss(interaction)
    torch.manual_seed(0)
    loss = model.calculate_loss(interaction)
    torch.testing.assert_close(loss, apart)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_id_tower_users_mean_are_the_mean_of_their_items_id_rows(tiny_llm_path, tmp_path, ml100k_train):
    """``id_tower_users: mean``: the ID graph has no user table; a user's ID layer 0 is the mean of their
    training items' ID rows, so a graph built over a longer history (``fold_in_valid``) loads the same
    parameters and its users reach the new items at layer 0."""
    model = _text_model(tiny_llm_path, tmp_path, ml100k_train, id_tower=0.3, id_tower_users="mean")
    assert not hasattr(model, "user_embedding") and model.output_size == 2 * model.latent_dim
    assert sorted(name for name, _ in model.named_parameters() if not name.startswith("text_mlp.")) == ["item_embedding.weight"]
    matrix = ml100k_train.inter_matrix(form="csr")
    d = model.latent_dim
    layer0 = model.all_layer0()
    for user in (1, 5, 40):
        items = sorted(set(matrix.indices[matrix.indptr[user]:matrix.indptr[user + 1]].tolist()))
        torch.testing.assert_close(layer0[user, d:], model.item_embedding.weight[items].mean(dim=0))
    torch.testing.assert_close(layer0[model.n_users:, d:], model.item_embedding.weight)
    # The text graph is as without the option.
    torch.testing.assert_close(layer0[:, :d], model.get_ego_embeddings())

    interaction = {model.USER_ID: torch.tensor([1, 2, 3]), model.ITEM_ID: torch.tensor([4, 5, 6]),
                   model.NEG_ITEM_ID: torch.tensor([7, 8, 9])}
    model.calculate_loss(interaction).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

    with pytest.raises(ConfigValueError, match="id_tower_users='items' is not supported.*Fix: set id_tower_users to one of id, mean"):
        _text_model(tiny_llm_path, tmp_path, ml100k_train, id_tower=0.3, id_tower_users="items")


def test_id_tower_refuses_a_text_graph_with_id_tables_or_bpr(tiny_llm_path, tmp_path, ml100k_train):
    with pytest.raises(ConfigValueError, match="id_tower is an ID graph beside the text one.*Fix"):
        _text_model(tiny_llm_path, tmp_path, ml100k_train, id_tower=0.5, text_item_id=True)
    with pytest.raises(ConfigValueError, match="graph_loss bpr.*Fix: set graph_loss softmax"):
        _text_model(tiny_llm_path, tmp_path, ml100k_train, id_tower=0.5, graph_loss="bpr")


@pytest.mark.parametrize("entries", [{}, {"id_tower": 0.5}, {"text_item_id": True, "graph_loss": "bpr"}])
def test_shared_first_layer_is_the_per_user_mlp_it_replaced(tiny_llm_path, tmp_path, ml100k_train, entries):
    """The MLP's first layer taken once over items and averaged into users (and the L2 rows read from that
    pass) computes what the MLP over every user's mean text computed: same loss, same gradients
    (``PerUserMLP`` of benchmarks/textlightgcn_step_cost.py, the code it replaced, timed there)."""
    from benchmarks.textlightgcn_step_cost import PerUserMLP

    model = _text_model(tiny_llm_path, tmp_path, ml100k_train, **entries)
    before = PerUserMLP(Config("TextLightGCN", "ml-100k", config_dict={
        "state": "WARNING", "text_encoder": "backbone", "llm_path": tiny_llm_path, "llm_cache_dir": str(tmp_path),
        **entries}), ml100k_train)
    before.load_state_dict(model.state_dict())
    interaction = {model.USER_ID: torch.tensor([1, 2, 3, 2]), model.ITEM_ID: torch.tensor([4, 5, 6, 7]),
                   model.NEG_ITEM_ID: torch.tensor([7, 8, 9, 10])}
    losses = []
    for m in (model, before):
        torch.manual_seed(0)
        loss = m.calculate_loss(interaction)
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1])
    for (name, p), q in zip(model.named_parameters(), before.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
