"""LightGCN+, RLMRec-Con and RLMRec-Gen on ml-100k with the tiny random Llama as text encoder."""

import pytest
import torch
from conftest import build_run

from recbole_llm.errors import ConfigValueError
from recbole_llm.model.fastlightgcn import FastLightGCN
from recbole_llm.model.graph import lightgcn_propagate, split_users_items
from recbole_llm.model.lightgcnplus import LightGCNPlus
from recbole_llm.model.rlmreccon import RLMRecCon
from recbole_llm.model.rlmrecgen import RLMRecGen
from recbole_llm.quick_start import load_data_and_model
from recbole_llm.utils import get_model

pytestmark = pytest.mark.slow  # three models train two epochs each on ml-100k

MODELS = {"LightGCN+": LightGCNPlus, "RLMRec-Con": RLMRecCon, "RLMRec-Gen": RLMRecGen}
TEXT_BUFFERS = {
    "LightGCN+": ("text_fusion.user_text", "text_fusion.item_text"),
    "RLMRec-Con": ("user_profile_embedding", "item_profile_embedding"),
    "RLMRec-Gen": ("user_profile_embedding", "item_profile_embedding"),
}


@pytest.fixture(scope="module")
def base(llm_base):
    # The tiny Llama embeds the texts: fast, offline (MiniLM: tests/test_text_encoder.py).
    return {**llm_base, "text_encoder": "backbone", "epochs": 2, "eval_step": 2, "learning_rate": 0.005}


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    """Each model trained for two epochs through RecBole's trainer, best checkpoint saved."""
    built = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(tmp_path_factory.mktemp("run"))  # the trainer's tensorboard folder
        for name in MODELS:
            config, model, trainer, train, valid, _ = build_run(name, base)
            trainer.fit(train, valid, saved=True, show_progress=False)
            built[name] = config, model, trainer, train
    return built


def test_cli_names_resolve_to_the_plugin_classes():
    for name, cls in MODELS.items():
        assert get_model(name) is cls
        assert get_model(cls.__name__) is cls
        assert issubclass(cls, FastLightGCN) and cls.uses_item_text


@pytest.mark.parametrize("name", MODELS)
def test_loss_falls(trained, name):
    losses = [sum(loss) if isinstance(loss, tuple) else loss for loss in trained[name][2].train_loss_dict.values()]
    assert len(losses) == 2
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", MODELS)
def test_full_sort_scores_every_item_and_agree_with_predict(trained, name):
    _, model, _, train = trained[name]
    users, items = torch.tensor([1, 2, 3, 500]), torch.tensor([5, 6, 7, 8])
    model.eval()
    with torch.no_grad():
        model.restore_user_e = model.restore_item_e = None
        scores = model.full_sort_predict({model.USER_ID: users})
        pairs = model.predict({model.USER_ID: users, model.ITEM_ID: items})
    # Flat, as RecBole's LightGCN returns it; the evaluator views it as (users, items).
    assert scores.numel() == 4 * train._dataset.item_num
    scores = scores.view(4, train._dataset.item_num)
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(pairs, scores[torch.arange(4), items])


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_has_no_text_buffers_and_reloads_to_identical_scores(trained, name):
    _, model, trainer, _ = trained[name]
    state = torch.load(trainer.saved_model_file, weights_only=False)["state_dict"]
    buffers = dict(model.named_buffers())
    for key in TEXT_BUFFERS[name]:
        assert key in buffers and key not in state
    _, reloaded, *_ = load_data_and_model(trainer.saved_model_file)
    model.load_state_dict(state)  # the best epoch's weights, as RecBole's evaluate loads them
    model.eval()
    for key in TEXT_BUFFERS[name]:
        assert torch.equal(dict(reloaded.named_buffers())[key], buffers[key])  # rebuilt from the cache
    users = {model.USER_ID: torch.arange(1, 40)}
    pairs = {model.USER_ID: torch.arange(1, 40), model.ITEM_ID: torch.arange(100, 139)}
    with torch.no_grad():
        model.restore_user_e = model.restore_item_e = None
        torch.testing.assert_close(reloaded.full_sort_predict(users), model.full_sort_predict(users))
        torch.testing.assert_close(reloaded.predict(pairs), model.predict(pairs))


def test_rlmrec_con_without_alignment_is_lightgcn_and_with_it_adds_a_term(trained):
    config, con, _, train = trained["RLMRec-Con"]
    batch = next(iter(train))
    lightgcn = FastLightGCN(config, train._dataset)
    lightgcn.load_state_dict(con.state_dict(), strict=False)  # every LightGCN weight; the MLP is extra
    con.train()
    recommendation, alignment = con.calculate_loss(batch)
    assert alignment > 0 and alignment.requires_grad
    # RLMRec's LightGCN sums its L + 1 layers where FastLightGCN averages them (same ranking).
    lightgcn_loss = lightgcn.ranking_reg_loss(batch, *((con.n_layers + 1) * e for e in lightgcn.forward()))
    con.kd_weight = 0.0
    try:
        assert sum(con.calculate_loss(batch)) == lightgcn_loss
    finally:
        con.kd_weight = config["kd_weight"]
    assert recommendation == lightgcn_loss
    con.zero_grad()
    alignment.backward()
    assert con.profile_mlp[0].weight.grad.abs().sum() > 0
    assert con.user_embedding.weight.grad.abs().sum() > 0


def test_rlmrec_gen_masks_only_the_chosen_nodes_and_never_at_inference(trained):
    config, gen, _, train = trained["RLMRec-Gen"]
    batch = next(iter(train))
    nodes = gen.masked_nodes(batch)
    in_batch = torch.cat([batch[gen.USER_ID], batch[gen.ITEM_ID] + gen.n_users, batch[gen.NEG_ITEM_ID] + gen.n_users])
    assert len(nodes.unique()) == len(nodes) == max(int(len(in_batch.unique()) * config["mask_ratio"]), 1)
    assert torch.isin(nodes, in_batch).all()

    ego = gen.get_ego_embeddings().detach()
    token = gen.mask_token.detach().clone()
    with torch.no_grad():
        gen.mask_token.fill_(3.0)
        masked = gen.mask(ego, nodes)
        gen.mask_token.copy_(token)
    chosen = torch.zeros(len(ego), dtype=torch.bool)
    chosen[nodes] = True
    assert torch.equal(masked[~chosen], ego[~chosen])
    assert (masked[chosen] == 3.0).all()

    gen.mask_scope = "graph"
    try:
        everywhere = gen.masked_nodes(batch)
    finally:
        gen.mask_scope = config["mask_scope"]
    assert len(everywhere) == int((gen.n_users + gen.n_items - 2) * config["mask_ratio"])
    assert not torch.isin(everywhere, torch.tensor([0, gen.n_users])).any()  # padding ids

    gen.eval()
    with torch.no_grad():
        final = (gen.n_layers + 1) * lightgcn_propagate(gen.norm_adj_matrix, ego, gen.n_layers)
        expected = split_users_items(final, gen.n_users, gen.n_items)
        for got, want in zip(gen.forward(), expected):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name, key, value", [
    ("RLMRec-Gen", "mask_ratio", 1.5),
    ("RLMRec-Gen", "mask_scope", "everything"),
    ("RLMRec-Con", "kd_temperature", 0),
    ("RLMRec-Con", "kd_weight", -1),
])
def test_bad_values_raise_a_config_error_naming_the_key(trained, name, key, value):
    config, _, _, train = trained[name]
    original = config[key]
    config[key] = value
    try:
        with pytest.raises(ConfigValueError, match=key):
            MODELS[name](config, train._dataset)
    finally:
        config[key] = original
