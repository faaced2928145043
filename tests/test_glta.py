"""GLTA on ml-100k with the tiny random Llama: stages learn, scores are sound, runs resume and reload."""

import json
from pathlib import Path

import pytest
import torch
from conftest import build_run

from recbole_llm.errors import ConfigValueError
from recbole_llm.model.score_fusion import FUSION_WEIGHTS
from recbole_llm.quick_start import load_data_and_model
from recbole_llm.trainer import GLTATrainer

# Training GLTA and GAL-Rec, even on the tiny backbone, takes minutes.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(llm_base):
    return {
        **llm_base, "graph_epochs": 3, "graph_learning_rate": 0.01, "stopping_step": 100,
        "item_alignment_epochs": 3, "item_alignment_lr": 0.01, "item_alignment_batch_size": 32,
        "user_alignment_epochs": 3, "user_alignment_lr": 0.01, "user_alignment_batch_size": 64, "max_history": 10,
    }


def build(config_dict, config_files=None):
    return build_run("GLTA", config_dict, config_files)


@pytest.fixture(scope="module")
def trained(base):
    config, model, trainer, train, valid, test = build(base)
    trainer.fit(train, valid, saved=True)
    return config, model, trainer, train, valid, test


def test_every_stage_loss_falls(trained):
    trainer = trained[2]
    for stage, losses in trainer.stage_loss_per_epoch.items():
        assert len(losses) == 3, stage
        assert losses[-1] < losses[0], (stage, losses)


def test_scores_cover_every_item_and_mask_nothing(trained):
    _, model, _, train, _, _ = trained
    users = torch.tensor([1, 2, 3, 500])
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict({model.USER_ID: users})
        pairs = model.predict({model.USER_ID: users, model.ITEM_ID: torch.tensor([5, 6, 7, 8])})
    assert scores.shape == (4, train._dataset.item_num)
    assert torch.isfinite(scores).all()  # RecBole's evaluator masks history; the model itself hides nothing
    assert torch.allclose(pairs, scores[torch.arange(4), torch.tensor([5, 6, 7, 8])])


def test_checkpoint_holds_no_frozen_backbone_and_reloads_to_identical_scores(trained):
    _, model, trainer, _, _, _ = trained
    state = torch.load(trainer.saved_model_file, weights_only=False)["state_dict"]
    assert not any(k.startswith("llm.") for k in state)
    assert "item_graph_embedding" in state and "gllm_head.bias" in state  # the default tied head
    _, reloaded, *_ = load_data_and_model(trainer.saved_model_file)
    model.load_state_dict(state)  # the best epoch's weights, as RecBole's evaluate loads them
    users = {model.USER_ID: torch.arange(1, 40)}
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.full_sort_predict(users), reloaded.full_sort_predict(users), atol=1e-5)


def test_run_killed_after_stage_two_resumes_at_stage_three(base, tmp_path, monkeypatch):
    config_dict = {**base, "checkpoint_dir": str(tmp_path), "graph_epochs": 1, "item_alignment_epochs": 1,
                   "user_alignment_epochs": 1}
    *_, trainer, train, valid, _ = build(config_dict)

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(GLTATrainer, "_train_epoch", killed)
        with pytest.raises(KeyboardInterrupt):
            trainer.fit(train, valid)
    assert sorted(p.name for p in trainer.run_dir.iterdir() if p.suffix == ".pth") == ["GLTA-best.pth",
        "stage1_graph.pth", "stage1_graph_best.pth", "stage1_holdout_graph_best.pth", "stage2_item_alignment.pth"]
    graph_embeddings = trainer.model.item_graph_embedding.clone()

    _, model, again, train, valid, _ = build(config_dict)
    again.fit(train, valid)
    assert again.run_dir == trainer.run_dir
    assert again.stage_seconds_per_epoch["graph"] == [] and again.stage_seconds_per_epoch["item_alignment"] == []
    assert len(again.stage_seconds_per_epoch["user_alignment"]) == 1
    assert torch.equal(model.item_graph_embedding, graph_embeddings)
    # The resumed run's graph is frozen, as the killed run's was after stage 1 (its trainable count too).
    assert not any(p.requires_grad for p in model.graph.parameters())
    trainable = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    assert trainable(model) == trainable(trainer.model)


def test_ablations_skip_their_stages(base, tmp_path):
    config_dict = {**base, "checkpoint_dir": str(tmp_path), "graph_epochs": 1, "item_alignment": False,
                   "user_alignment": False}
    _, _, trainer, train, valid, test = build(config_dict)
    trainer.fit(train, valid)
    assert trainer.stage_seconds_per_epoch["item_alignment"] == [] and trainer.stage_seconds_per_epoch["user_alignment"] == []
    assert set(trainer.evaluate(test)) >= {"ndcg@10"}


def test_users_per_epoch_samples_stage_three_users(base, tmp_path, monkeypatch):
    """A stage-3 epoch reads users_per_epoch users in batches of user_alignment_batch_size, a fresh draw each epoch."""
    config_dict = {**base, "checkpoint_dir": str(tmp_path), "graph_epochs": 1, "item_alignment": False,
                   "user_alignment_epochs": 2, "users_per_epoch": 100}
    _, model, trainer, train, valid, _ = build(config_dict)
    seen = []
    loss = model.user_alignment_loss
    monkeypatch.setattr(model, "user_alignment_loss", lambda batch: seen.append(batch[model.USER_ID].tolist()) or loss(batch))
    trainer.fit(train, valid)
    assert [len(batch) for batch in seen] == [64, 64, 64, 64]  # ceil(100 / 64) batches an epoch
    first, second = sum(seen[:2], []), sum(seen[2:], [])
    assert len(set(first)) == 128 and set(first) != set(second)


def test_graph_checkpoint_replaces_stage_one(base, trained, tmp_path):
    model = trained[1]
    graph_file = tmp_path / "lightgcn.pth"
    torch.save({"state_dict": model.graph.state_dict()}, graph_file)
    config_dict = {**base, "checkpoint_dir": str(tmp_path), "graph_checkpoint": str(graph_file),
                   "item_alignment_epochs": 1, "user_alignment_epochs": 1}
    _, fresh, trainer, train, valid, _ = build(config_dict)
    trainer.fit(train, valid)
    assert trainer.stage_seconds_per_epoch["graph"] == []
    # The checkpoint replaces the LightGCN of all training interactions, whose embeddings score the fused
    # model; the holdout graph (lm_holdout_ratio) feeding the language model is still trained.
    assert torch.allclose(fresh.item_score_embedding, model.item_score_embedding)

    _, _, trainer, train, valid, _ = build({**config_dict, "graph_checkpoint": str(tmp_path / "nope.pth")})
    with pytest.raises(ConfigValueError, match="graph_checkpoint"):
        trainer.fit(train, valid)


def test_profile_and_prediction_texts_are_generated_once_and_cached(base, tmp_path, monkeypatch):
    config_dict = {**base, "llm_cache_dir": str(tmp_path), "use_profile": True, "use_prediction": True,
                   "user_text_max_tokens": 4, "user_text_items": 3}
    model = build(config_dict)[1]
    # One text per user, "" for the padding user. The tiny random backbone writes noise, which after
    # the answer prefix is sometimes only whitespace (""), so the check is that users got their own texts.
    assert len(model.profiles) == model.n_users and model.profiles[0] == "" and len(set(model.profiles[1:])) > 1
    cached = sorted((tmp_path / "user_text").glob("ml-100k-*.json"))
    assert [p.name.split("-")[2] for p in cached] == ["prediction", "profile"]
    assert json.loads(cached[1].read_text()) == model.profiles

    import recbole_llm.data.user_text as user_text

    monkeypatch.setattr(user_text, "load_backbone", lambda *a, **k: pytest.fail("texts were generated again"))
    assert build(config_dict)[1].predictions == model.predictions
    batch = model.user_prompts(torch.tensor([1]), [model.inference_history[1]])
    assert batch.positions["out"].shape == (1, model.user_alignment_targets)


def test_other_head_modes_train_and_score(base, tmp_path):
    similarity = {}
    for head in ("item_tokens", "linear"):
        config_dict = {**base, "checkpoint_dir": str(tmp_path / head), "gllm_head": head, "graph_epochs": 1,
                       "item_alignment_epochs": 2, "item_alignment_lr": 0.002, "user_alignment_epochs": 1}
        _, model, trainer, train, valid, _ = build(config_dict)
        trainer.fit(train, valid)
        losses = trainer.stage_loss_per_epoch["item_alignment"]
        assert losses[-1] < losses[0], (head, losses)
        with torch.no_grad():
            scores = model.full_sort_predict({model.USER_ID: torch.arange(1, 5)})
            tokens = model.item_projector(model.item_graph_embedding)
            similarity[head] = torch.nn.functional.cosine_similarity(model.gllm_head.linear.weight, tokens).mean()
        assert scores.shape == (4, train._dataset.item_num) and torch.isfinite(scores).all()
    # item_tokens starts the head at P_i(E_i) and training moves it; a fresh linear head is unrelated to it
    assert similarity["item_tokens"] > similarity["linear"].abs() + 0.1, similarity


def test_fused_scores_start_at_stage_one_and_the_record_says_so(base, tmp_path):
    config_dict = {**base, "checkpoint_dir": str(tmp_path), "graph_epochs": 1, "item_alignment_epochs": 1,
                   "user_alignment_epochs": 1}
    config, model, trainer, train, valid, test = build(config_dict)
    assert model.score_fusion.name == "residual" and model.holdout_graph is not None
    trainer.run_dir.mkdir(parents=True)
    trainer._graph_stage(train, valid, verbose=False, show_progress=False)
    model.eval()
    users = torch.tensor([1, 2, 3, 500])
    with torch.no_grad():
        fused = model.full_sort_predict({model.USER_ID: users})
        graph = model.graph.full_sort_predict({model.USER_ID: users}).view(len(users), -1)
    # Gate 0, scale 1: the language model adds nothing yet, the scores are the full-data LightGCN's.
    torch.testing.assert_close(fused, graph)
    assert model.fusion_weights() == {"scale": 1.0, "gate": 0.0}
    with torch.no_grad(), model.scoring_stage1_alone():
        torch.testing.assert_close(model.full_sort_predict({model.USER_ID: users}), graph)
    assert set(trainer.graph_test_result(test)) >= {"ndcg@10"} and not model.stage1_alone


def test_stage_three_predicts_only_what_the_language_models_graph_did_not_see(base, tmp_path):
    _, model, *_ = build({**base, "checkpoint_dir": str(tmp_path)})
    graph_pairs = set(zip(*(model.holdout_dataset.inter_feat[f].tolist() for f in (model.USER_ID, model.ITEM_ID))))
    users = model.lm_users
    assert 0 < len(users) < model.n_users
    seen = {}

    def record(users, histories):
        seen.update({u: set(h.tolist()) for u, h in zip(users.tolist(), histories)})
        return real(users, histories)

    real, model.user_prompts = model.user_prompts, record
    torch.manual_seed(0)
    model.user_alignment_loss({model.USER_ID: users[:8]})
    for user in users[:8].tolist():
        held, shown = set(model.lm_targets[user].tolist()), seen[user]
        assert held and not held & shown  # targets never stand in the prompt
        assert all((user, item) not in graph_pairs for item in held)  # nor in the graph the LM reads
        assert shown <= set(model.lm_history[user].tolist())
        assert held | set(model.lm_history[user].tolist()) == set(model.history[user].tolist())  # training items only


@pytest.mark.parametrize("key, text, wrong", [
    ("user_alignment_prompt", "User token: {user_token} Item tokens: {item_token}", "{item_token}"),
    ("item_alignment_system", "Reorder the {shuffled} descriptions.", "{shuffled}"),
])
def test_a_misspelt_prompt_placeholder_is_refused_when_the_model_is_built(base, key, text, wrong):
    """Not at the first stage-2 or stage-3 batch, after stage 1 has trained."""
    with pytest.raises(ConfigValueError, match=key) as refused:
        build({**base, key: text})
    assert wrong in str(refused.value) and "{item_tokens}" in str(refused.value) and "Fix:" in str(refused.value)


def test_the_defaults_read_the_text_aware_stage_1(base, tmp_path):
    """GLTA.yaml: GAL-Rec's stage 1 (TextLightGCN beside an ID graph whose users are their items' mean, the
    softmax loss) for both graphs, 6144 users a stage-3 epoch, and the test folded in on ordered data alone."""
    config, model, trainer, *_ = build({**base, "checkpoint_dir": str(tmp_path)})
    for graph in model.stage1_graphs():
        assert type(graph).__name__ == "TextLightGCN" and graph.id_tower == 0.5 and graph.mf_loss.cosine
        assert graph.id_tower_users == "mean" and not hasattr(graph, "user_embedding")
    assert (config["users_per_epoch"], config["graph_eval_step"]) == (6144, 1) and not trainer._fold_in
    ordered = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}
    assert build({**base, "eval_args": ordered, "checkpoint_dir": str(tmp_path)})[2]._fold_in


def test_paper_property_file_runs_the_papers_path(base, tmp_path):
    paper = Path(__file__).resolve().parent.parent / "recbole_llm" / "properties" / "glta-paper.yaml"
    config, model, *_ = build({**base, "checkpoint_dir": str(tmp_path)}, config_files=[str(paper)])
    assert model.score_fusion.name == "none"
    assert model.holdout_graph is None and model.lm_targets is None and model.fusion_weights() is None
    assert len(model.lm_users) == model.n_users - 1  # every user of ml-100k has training items
    # The paper's stage 1: LightGCN over IDs with BPR and its user table; every user in each stage-3 epoch.
    assert type(model.graph).__name__ == "FastLightGCN" and not model.graph.mf_loss.cosine
    assert hasattr(model.graph, "user_embedding") and config["users_per_epoch"] is None


def test_the_stage_3_loss_reaches_the_fusion_gate_first(base, tmp_path):
    """The residual fusion's gate starts at 0, so stage 3 begins at stage 1's ranking; its loss moves the gate."""
    _, model, *_ = build({**base, "checkpoint_dir": str(tmp_path)})
    loss = model.user_alignment_loss({model.USER_ID: model.lm_users[:4]})
    loss.backward()
    assert torch.isfinite(loss) and model.score_fusion.gate.grad.abs() > 0


def test_stage_1_ranking_before_stage_3_is_validated_without_the_lm(base, tmp_path, monkeypatch):
    """The check before stage 3's first epoch scores by stage 1 alone; with the gate at 0 the fused scores
    are the same, so its validation equals the full model's, and no LM forward runs for it."""
    _, model, trainer, _, valid, _ = build({**base, "checkpoint_dir": str(tmp_path)})
    model.eval()
    full_score, full_result = trainer._valid_epoch(valid)  # the fused model, LM forward included
    calls = []
    real = model.lm_logits
    monkeypatch.setattr(model, "lm_logits", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    trainer._validate_start(valid, saved=False, show_progress=False)
    assert not calls and model.fusion_weights()["gate"] == 0
    assert trainer.best_valid_score == full_score and dict(trainer.best_valid_result) == dict(full_result)


def test_on_ordered_data_prompts_show_the_latest_items_and_targets_come_next(base, tmp_path):
    ordered = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}
    _, model, _, train, valid, test = build({**base, "checkpoint_dir": str(tmp_path), "eval_args": ordered,
                                              "max_history": 5})
    assert model.ordered
    inter = train._dataset.inter_feat
    time_of = {(u, i): t for u, i, t in zip(*(inter[f].tolist() for f in (model.USER_ID, model.ITEM_ID, "timestamp")))}
    later = {}  # each user's validation and test items: never in a prompt, never a target
    for data in (valid, test):
        feat = data._dataset.inter_feat
        for u, i in zip(feat[model.USER_ID].tolist(), feat[model.ITEM_ID].tolist()):
            later.setdefault(u, set()).add(i)
    seen = {}
    real = model.user_prompts
    model.user_prompts = lambda users, histories: seen.update(zip(users.tolist(), histories)) or real(users, histories)
    users = model.lm_users[:8]
    model.user_alignment_loss({model.USER_ID: users})
    for user in users.tolist():
        times = lambda items: [time_of[user, i] for i in items]  # noqa: E731
        shown, held = seen[user].tolist(), model.lm_targets[user].tolist()
        assert times(shown) == sorted(times(shown)) and max(times(shown)) <= min(times(held))  # oldest first, then the targets
        assert len(shown) == min(5, len(model.lm_history[user]))
        inference = model.inference_history[user].tolist()
        everything = sorted(time_of[user, i] for (u, i) in time_of if u == user)
        assert times(inference) == everything[-len(inference):]  # the latest training items, oldest first
        assert not (set(shown) | set(held) | set(inference)) & later.get(user, set())


def test_a_bfloat16_backbone_trains_and_scores(base, tmp_path):
    """The paper-scale property file runs the backbone in bfloat16; the head and projectors stay float32."""
    _, model, *_ = build({**base, "checkpoint_dir": str(tmp_path), "llm_dtype": "bfloat16"})
    assert model.llm.dtype == torch.bfloat16
    users = model.lm_users[:4]
    loss = model.user_alignment_loss({model.USER_ID: users})
    loss.backward()
    assert torch.isfinite(loss)  # the gate starts at 0, so at first only it gets a gradient
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.user_alignment_parameters())
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict({model.USER_ID: users})
    assert scores.dtype == torch.float32 and torch.isfinite(scores[:, 1:]).all()


def test_validated_fusion_picks_its_weight_on_validation_and_reloads(base, tmp_path):
    """``score_fusion: validated``: the LM head trains alone, then the weight of its standardised logits
    that ranks best on validation is fused with stage 1; the saved model scores the same after a
    reload, and running the finished command again makes the same choice."""
    config_dict = {**base, "checkpoint_dir": str(tmp_path), "score_fusion": "validated", "graph_epochs": 1,
                   "item_alignment_epochs": 1, "user_alignment_epochs": 2}
    config, model, trainer, train, valid, test = build(config_dict)
    assert model.score_fusion.lm_alone() and model.score_fusion.lm_alone(training=True)
    best_score, _ = trainer.fit(train, valid, saved=True)
    weights = model.fusion_weights()
    assert min(abs(w - weights["weight"]) for w in FUSION_WEIGHTS) < 1e-6
    assert not model.score_fusion.lm_alone() and model.score_fusion.lm_alone(training=True)
    everyone = torch.arange(model.n_users)
    with torch.no_grad():
        graph, lm = model.stage1_scores(everyone), model.lm_logits(everyone)
        # Each part divided by its standard deviation over all real users and items, the LM's then weighted.
        assert weights["scale"] == pytest.approx(1 / float(graph[1:, 1:].std()), rel=1e-4)
        assert weights["gate"] == pytest.approx(weights["weight"] / float(lm[1:, 1:].std()), rel=1e-4)
        # The returned validation score is the saved model's; stage 1 alone (weight 0) is no better.
        assert trainer._valid_epoch(valid)[0] == pytest.approx(best_score)
        with model.scoring_stage1_alone():
            assert trainer._valid_epoch(valid)[0] <= best_score
        users = torch.tensor([1, 2, 3, 500])
        fused = model.full_sort_predict({model.USER_ID: users})
    _, reloaded, *_ = load_data_and_model(trainer.saved_model_file)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.full_sort_predict({reloaded.USER_ID: users}), fused)
    config, model, trainer, train, valid, test = build(config_dict)  # the finished command, run again
    assert trainer.fit(train, valid, saved=True)[0] == pytest.approx(best_score)
    assert model.fusion_weights() == pytest.approx(weights)


def test_early_stopped_last_stage_is_not_trained_again_by_the_same_command(base, tmp_path, monkeypatch):
    """A run whose stage 3 early-stopped, run again, keeps its result: RecBole's fit would resume after the
    last epoch (below ``user_alignment_epochs``) and train one more before stopping again."""
    valid_score = iter(range(100, 0, -1))  # every validation below the one before: no gain after the first
    monkeypatch.setattr(GLTATrainer, "_valid_epoch",
                        lambda self, data, show_progress=False: (score := next(valid_score) / 1000, {"ndcg@10": score}))
    config_dict = {**base, "checkpoint_dir": str(tmp_path), "graph_epochs": 1, "item_alignment_epochs": 1,
                   "user_alignment_epochs": 6, "stopping_step": 1}
    config, model, trainer, train, valid, test = build(config_dict)
    best = trainer.fit(train, valid, saved=True)
    assert len(trainer.stage_seconds_per_epoch["user_alignment"]) == 2  # stopped after 2 epochs without gain
    config, model, trainer, train, valid, test = build(config_dict)  # the same command, run again
    assert trainer.fit(train, valid, saved=True) == best
    assert trainer.stage_seconds_per_epoch["user_alignment"] == []


def test_lora_adapters_train_in_stage_3(base, tmp_path):
    config_dict = {**base, "checkpoint_dir": str(tmp_path), "lora_r": 2, "graph_epochs": 1, "item_alignment_epochs": 1,
                   "user_alignment_epochs": 1}
    _, model, trainer, train, valid, _ = build(config_dict)
    lora = [p for name, p in model.llm.named_parameters() if "lora_" in name]
    before = [p.detach().clone() for p in lora]
    trainer.fit(train, valid)
    trained = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert lora and {id(p) for p in lora} <= trained
    assert any(not torch.equal(a, b) for a, b in zip(before, lora))
    with torch.no_grad():
        assert torch.isfinite(model.full_sort_predict({model.USER_ID: torch.arange(1, 5)})).all()
