"""The shared graph stage (recbole_llm/model/graph.py) and FastLightGCN, against dense maths and stock LightGCN."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from recbole.data import data_preparation
from recbole.model.general_recommender import LightGCN
from recbole.utils import init_seed

from recbole_llm.config import Config
from recbole_llm.model.fastlightgcn import FastLightGCN
from recbole_llm.model.graph import SparseMM, build_norm_adj, lightgcn_propagate, split_users_items, user_mean_matrices
from recbole_llm.quick_start import run_recbole_llm
from recbole_llm.utils import create_dataset, get_model, get_trainer


class _Interactions:
    """The two things ``build_norm_adj`` and ``user_mean_matrices`` read from a RecBole dataset."""

    def __init__(self, users, items, n_users, n_items):
        self.user_num, self.item_num = n_users, n_items
        self._coo = sp.coo_matrix((np.ones(len(users)), (users, items)), shape=(n_users, n_items))

    def inter_matrix(self, form="coo"):
        return self._coo.asformat(form)


def _dense_norm_adj(users, items, n_users, n_items):
    n = n_users + n_items
    a = np.zeros((n, n))
    a[users, n_users + items] = 1.0
    a[n_users + items, users] = 1.0
    d = (a.sum(axis=1) + 1e-7) ** -0.5
    return torch.tensor(d[:, None] * a * d[None, :], dtype=torch.float32)


def test_propagation_and_gradients_match_dense_reference():
    rng = np.random.default_rng(0)
    n_users, n_items, n_layers = 13, 17, 3
    users, items = rng.integers(1, n_users, 60), rng.integers(1, n_items, 60)  # repeats included; id 0 is padding
    adj = build_norm_adj(_Interactions(users, items, n_users, n_items))
    dense = _dense_norm_adj(users, items, n_users, n_items)
    assert adj.layout == torch.sparse_csr
    torch.testing.assert_close(adj.to_dense(), dense, atol=1e-6, rtol=0)
    torch.testing.assert_close(adj.to_dense(), adj.to_dense().T, atol=0, rtol=0)

    ego = torch.randn(n_users + n_items, 8, generator=torch.Generator().manual_seed(0))
    upstream = torch.randn(n_users + n_items, 8, generator=torch.Generator().manual_seed(1))
    x_sparse, x_dense = ego.clone().requires_grad_(), ego.clone().requires_grad_()
    out_sparse = lightgcn_propagate(adj, x_sparse, n_layers)
    layers = [x_dense]
    for _ in range(n_layers):
        layers.append(dense @ layers[-1])
    out_dense = torch.stack(layers).mean(dim=0)
    (out_sparse * upstream).sum().backward()
    (out_dense * upstream).sum().backward()
    torch.testing.assert_close(out_sparse, out_dense, atol=1e-5, rtol=0)
    torch.testing.assert_close(x_sparse.grad, x_dense.grad, atol=1e-5, rtol=0)

    user_e, item_e = split_users_items(out_sparse, n_users, n_items)
    assert user_e.shape == (n_users, 8) and item_e.shape == (n_items, 8)


def test_user_mean_matrix_and_its_product_match_dense_reference():
    rng = np.random.default_rng(0)
    n_users, n_items = 13, 17
    users, items = rng.integers(1, n_users - 1, 60), rng.integers(1, n_items, 60)  # user n_users-1 has no item
    mean, mean_t = user_mean_matrices(_Interactions(users, items, n_users, n_items))
    a = np.zeros((n_users, n_items))
    a[users, items] = 1.0  # a repeated pair counts once
    dense = torch.tensor(a / np.maximum(a.sum(axis=1, keepdims=True), 1), dtype=torch.float32)
    torch.testing.assert_close(mean.to_dense(), dense)
    torch.testing.assert_close(mean_t.to_dense(), dense.T)

    x = torch.randn(n_items, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    upstream = torch.randn(n_users, 5, generator=torch.Generator().manual_seed(1))
    x_sparse, x_dense = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = SparseMM.apply(mean, mean_t, x_sparse)
    torch.testing.assert_close(out, dense @ x_dense)
    (out * upstream).sum().backward()
    ((dense @ x_dense) * upstream).sum().backward()
    torch.testing.assert_close(x_sparse.grad, x_dense.grad)
    assert not out[n_users - 1].any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_propagation_on_cuda_matches_cpu():
    rng = np.random.default_rng(0)
    data = _Interactions(rng.integers(1, 50, 400), rng.integers(1, 80, 400), 50, 80)
    ego = torch.randn(130, 16)
    cpu = lightgcn_propagate(build_norm_adj(data), ego, 2)
    cuda = lightgcn_propagate(build_norm_adj(data, device="cuda"), ego.cuda(), 2)
    torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    """Config, train data and a trainer for stock LightGCN and FastLightGCN, seeded as the runner seeds them."""
    tmp = tmp_path_factory.mktemp("graph")
    built = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(tmp)  # the trainers' tensorboard folder
        for name in ("LightGCN", "FastLightGCN"):
            config = Config(name, "ml-100k", config_dict={"checkpoint_dir": str(tmp / "saved"), "state": "WARNING"})
            init_seed(config["seed"], config["reproducibility"])
            train_data, _, test_data = data_preparation(config, create_dataset(config))
            init_seed(config["seed"], config["reproducibility"])
            model = get_model(name)(config, train_data._dataset)
            built[name] = config, train_data, test_data, get_trainer(config["MODEL_TYPE"], name)(config, model)
    return built


def test_fastlightgcn_is_found_with_stock_defaults(ml100k):
    config = ml100k["FastLightGCN"][0]
    assert get_model("FastLightGCN") is FastLightGCN
    for key in ("embedding_size", "n_layers", "reg_weight", "require_pow"):
        assert config[key] == ml100k["LightGCN"][0][key]


def test_norm_adj_equals_stock_lightgcn_on_ml100k(ml100k):
    assert type(ml100k["LightGCN"][3].model) is LightGCN  # RecBole's own, built with its dok_matrix code
    stock = ml100k["LightGCN"][3].model.norm_adj_matrix.to_dense()
    ours = ml100k["FastLightGCN"][3].model.norm_adj_matrix
    assert ours.layout == torch.sparse_csr
    assert torch.equal(ours.to_dense(), stock)


@pytest.mark.slow
def test_same_initial_weights_and_first_epoch_loss_as_stock(ml100k):
    stock, fast = ml100k["LightGCN"][3], ml100k["FastLightGCN"][3]
    assert torch.equal(stock.model.user_embedding.weight, fast.model.user_embedding.weight)
    assert torch.equal(stock.model.item_embedding.weight, fast.model.item_embedding.weight)
    losses = []
    for name in ("LightGCN", "FastLightGCN"):
        config, train_data, _, trainer = ml100k[name]
        init_seed(config["seed"], config["reproducibility"])  # the same negative samples for both
        losses.append(trainer._train_epoch(train_data, 0))
    # The propagation differs only in float summation order; measured: equal to 1e-9 relative.
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)


def test_full_sort_predict_scores_every_item(ml100k):
    _, train_data, test_data, trainer = ml100k["FastLightGCN"]
    model = trainer.model.eval()
    interaction = next(iter(test_data))[0]
    with torch.no_grad():
        scores = model.full_sort_predict(interaction)
        user_e, item_e = model.forward()
    n_items = train_data._dataset.item_num
    assert scores.shape == (len(interaction) * n_items,)
    assert model.restore_item_e.shape == item_e.shape == (n_items, model.latent_dim)
    first_user = interaction[model.USER_ID][0]
    torch.testing.assert_close(scores[:n_items], item_e @ user_e[first_user])
    model.train()


@pytest.mark.slow
def test_fastlightgcn_trains_and_evaluates_like_stock(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quiet = {"epochs": 2, "show_progress": False, "checkpoint_dir": str(tmp_path / "saved"), "state": "WARNING"}
    fast = run_recbole_llm("FastLightGCN", "ml-100k", config_dict=quiet)["test_result"]
    stock = run_recbole_llm("LightGCN", "ml-100k", config_dict=quiet)["test_result"]
    assert fast["ndcg@10"] > 0.05  # the stock-model threshold in test_runner.py
    # Same seed, same batches and negatives; only float rounding differs (measured: equal to 4 digits).
    assert fast["ndcg@10"] == pytest.approx(stock["ndcg@10"], abs=0.002)
