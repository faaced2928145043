"""fold_in_valid: the test reads the validation interactions (graph propagation, LM context) without
training on them, every state is restored afterwards, and validation never changes."""

import pytest
import torch
from conftest import build_run
from recbole.data.interaction import cat_interactions

from recbole_llm.errors import ConfigValueError
from recbole_llm.quick_start import run_recbole_llm
from recbole_llm.trainer.graph_stage_trainer import fold_in_wanted, graph_cache_digest
from recbole_llm.trainer.run_state import run_digest

pytestmark = pytest.mark.slow

ORDERED = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}


@pytest.fixture(scope="module")
def base(llm_base):
    return {**llm_base, "eval_args": ORDERED, "graph_epochs": 2, "graph_learning_rate": 0.01, "epochs": 1,
            "prompt_batch_size": 32, "users_per_epoch": 64, "n_hop1": 4, "lm_objective": "next_item",
            "next_item_cut": "last", "score_fusion": "validated", "lm_holdout_ratio": 0.0, "fold_in_valid": True}


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    config, model, trainer, train, valid, test = build_run(
        "GALRec", {**base, "checkpoint_dir": str(tmp_path_factory.mktemp("fold"))})
    trainer.fit(train, valid, saved=True)
    return config, model, trainer, train, valid, test


def valid_items(valid):
    feat = valid._dataset.inter_feat
    return dict(zip(feat["user_id"].tolist(), feat["item_id"].tolist()))


def test_only_the_split_after_validation_is_folded_in(trained):
    *_, trainer, train, valid, test = trained
    assert trainer.folds_in(test) and not trainer.folds_in(valid) and not trainer.folds_in(train)
    with trainer.unfolded():
        assert not trainer.folds_in(test)
    folded = trainer._folded_dataset()
    assert len(folded.inter_feat) == len(train.dataset.inter_feat) + len(valid.dataset.inter_feat)


def test_folded_in_propagates_over_the_validation_items_and_ends_contexts_there(trained):
    _, model, trainer, train, valid, _ = trained
    before = {name: b.clone() for name, b in model.named_buffers(recurse=False)}
    context, sequences = model.inference_context, model.sequences
    folded = trainer._folded_dataset()
    expected = type(model.graph)(model.stage1_config, folded)
    expected.load_state_dict(model.graph.state_dict())
    with torch.no_grad():
        users_e, items_e = expected.forward()
    last = valid_items(valid)
    with model.folded_in(folded):
        torch.testing.assert_close(model.user_graph_embedding, users_e)
        torch.testing.assert_close(model.item_graph_embedding, items_e)
        assert not torch.equal(model.user_graph_embedding, before["user_graph_embedding"])
        (hop1, mask1), _ = model.inference_context
        for user, item in list(last.items())[:50]:
            shown = hop1[user][mask1[user]].tolist()
            assert shown == (sequences[user].tolist() + [item])[-4:]
            assert model.sequences[user].tolist() == sequences[user].tolist() + [item]
    # Everything as it was.
    for name, b in model.named_buffers(recurse=False):
        assert torch.equal(b, before[name]), name
    assert model.inference_context is context and model.sequences is sequences
    assert model.graph.norm_adj_matrix._nnz() == type(model.graph)(model.stage1_config, train.dataset).norm_adj_matrix._nnz()


def test_the_test_changes_and_validation_does_not(trained):
    *_, trainer, _, valid, test = trained
    folded = trainer.evaluate(test, load_best_model=True)
    with trainer.unfolded():
        unfolded = trainer.evaluate(test, load_best_model=False)
        valid_unfolded = trainer.evaluate(valid, load_best_model=False)
    assert dict(folded) != dict(unfolded)
    assert dict(trainer.evaluate(valid, load_best_model=False)) == dict(valid_unfolded)
    # Evaluating again gives the same figures: the fold-in left nothing behind.
    assert dict(trainer.evaluate(test, load_best_model=False)) == dict(folded)


def test_glta_prompts_end_at_the_validation_item(base, tmp_path):
    _, model, _, train, valid, _ = build_run("GLTA", {**base, "max_history": 3, "checkpoint_dir": str(tmp_path)})
    assert model.ordered
    folded = train.dataset.copy(cat_interactions([train.dataset.inter_feat, valid.dataset.inter_feat]))
    history, sequences = model.inference_history, model.sequences
    with model.folded_in(folded):
        for user, item in list(valid_items(valid).items())[:50]:
            assert list(model.inference_history[user]) == (list(sequences[user]) + [item])[-3:]
    assert model.inference_history is history


def test_the_run_records_both_tests_and_the_key_changes_no_digest(base, tmp_path, one_thread):
    result = run_recbole_llm("GALRec", "ml-100k", config_dict={**base, "checkpoint_dir": str(tmp_path)})
    for key in ("unfolded_test_result", "unfolded_graph_test_result"):
        assert set(result[key]) == set(result["test_result"])
    assert result["graph_test_result"] != result["unfolded_graph_test_result"]
    config, *_ = build_run("GALRec", {**base, "checkpoint_dir": str(tmp_path)})
    other, *_ = build_run("GALRec", {**base, "fold_in_valid": False, "checkpoint_dir": str(tmp_path)})
    assert run_digest(config) == run_digest(other)
    from recbole_llm.model.galrec import GALRec
    assert graph_cache_digest(config, GALRec) == graph_cache_digest(other, GALRec)
    # Without the key nothing is folded in, and no unfolded figures are recorded.
    plain = run_recbole_llm("GALRec", "ml-100k", config_dict={**base, "fold_in_valid": False, "checkpoint_dir": str(tmp_path)})
    assert plain["unfolded_test_result"] is None and dict(plain["test_result"]) == dict(result["unfolded_test_result"])


@pytest.mark.parametrize("value, order, expected", [("auto", "TO", True), ("auto", "RO", False), (True, "RO", True),
                                                    (False, "TO", False), (None, "TO", False)])
def test_auto_folds_in_under_time_order_alone(value, order, expected):
    assert fold_in_wanted({"fold_in_valid": value, "eval_args": {"order": order}}) is expected


def test_a_value_that_is_not_a_boolean_is_refused(base, tmp_path):
    with pytest.raises(ConfigValueError, match=r"fold_in_valid='yes' is not a boolean nor auto.*Fix: set it to True, False or auto"):
        build_run("GALRec", {**base, "fold_in_valid": "yes", "checkpoint_dir": str(tmp_path)})


def test_a_trainer_that_did_not_fit_says_it_cannot_fold_in(trained, caplog):
    config, model, trainer, _, _, test = trained
    fresh = type(trainer)(config, model)
    with caplog.at_level("WARNING"):
        result = fresh.evaluate(test, load_best_model=False)
    assert "has not run fit" in caplog.text
    with trainer.unfolded():
        assert dict(result) == dict(trainer.evaluate(test, load_best_model=False))
