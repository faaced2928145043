"""The run folders and the stage-1 cache are named by digests of the config. The rules: a key stage 1
reads changes both; a key only the later stages read changes the run digest alone; a budget key
changes no run digest, so a longer run resumes a shorter one; the stage-1 options (graph model, loss,
text) change the cache only where stage 1 reads them; the id control's stage 1 is the ID graph with
the same loss. One guard keeps the stage-1 cache key of the default GLTA and GAL-Rec configs as it
was, so the caches that runs already left stay valid.

The rules are checked from the papers' stage 1 (GLTA's and GAL-Rec's defaults before their text-aware
ones: ``GLTA_BEFORE``, ``GALREC_BEFORE``), where stage 1 reads none of the text's and the loss's keys.
"""

import os
from pathlib import Path

import pytest
from conftest import BEFORE

from recbole_llm.config import Config
from recbole_llm.helpers import property_keys, with_entries
from recbole_llm.model.galrec import GALRec
from recbole_llm.model.glta import GLTA
from recbole_llm.model.graph_stage import (GRAPH_LM_MODELS, HOLDOUT_KEYS, GraphLMRecommender, stage1_config,
                                          stage1_options)
from recbole_llm.trainer.graph_stage_trainer import graph_cache_digest
from recbole_llm.trainer.run_state import ADDED_KEYS_UNSET, BOOKKEEPING_KEYS, BUDGET_KEYS, TEST_KEYS, run_digest

DATA = "../shared/datasets"
MODELS = {"GLTA": GLTA, "GALRec": GALRec}

# The stage-1 cache keys of the default configs, as computed since the cache was introduced: a change
# here orphans every cached stage 1 that users have. "<model> before": the model's defaults before its
# text-aware stage 1, whose caches stay valid for a run that sets those keys back.
CACHE_DIGESTS = {
    ("GLTA before", "ml-100k"): "7e225be1802a",
    ("GALRec before", "ml-100k"): "23670f0e528c",
    ("GLTA before", "ml-1m"): "944343bc6c92",
    ("GALRec before", "amazon-beauty"): "6d0ef2178e00",
    ("GALRec", "ml-100k"): "6620edb2f265",
    ("GALRec", "amazon-beauty"): "9e4336b7a6e4",
    # GLTA's text-aware defaults share GAL-Rec's stage 1, and its cache file.
    ("GLTA", "ml-100k"): "6620edb2f265",
    ("GLTA", "ml-1m"): "66d073bb397a",
    ("GLTA", "amazon-beauty"): "9e4336b7a6e4",
}


def config(model, dataset="ml-100k", **entries):
    built = Config(model, dataset, config_dict=entries or None)
    # The two machine-dependent entries, pinned: RecBole's absolute ml-100k path and the device.
    built.final_config_dict["data_path"] = f"dataset/{dataset}"
    built.final_config_dict["device"] = "cpu"
    return built


def other(value):
    """A value different from ``value``, of its type where it has one."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + " changed"
    return 7 if value is None else None


def digests(built, model):
    return run_digest(built), graph_cache_digest(built, MODELS[model]), graph_cache_digest(built, MODELS[model], True)


@pytest.fixture(scope="module", params=sorted(MODELS))
def default(request):
    model = request.param
    built = config(model, **BEFORE[model])
    return model, built, digests(built, model)


@pytest.mark.parametrize("model, dataset", sorted(CACHE_DIGESTS))
def test_the_stage_1_cache_key_of_the_default_configs_is_unchanged(model, dataset, monkeypatch):
    # data_path is part of the key, as the benchmarks write it: relative to the checkout.
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    entries = {} if dataset == "ml-100k" else {"data_path": DATA}
    if entries and not os.path.isdir(os.path.join(DATA, dataset)):
        pytest.skip(f"{DATA}/{dataset} is not here")
    name, _, before = model.partition(" ")
    entries.update(BEFORE[name] if before else {})
    assert graph_cache_digest(config(name, dataset, **entries), MODELS[name]) == CACHE_DIGESTS[model, dataset]


def test_glta_and_galrec_read_one_stage_1_block():
    """One block of keys; each model's file chooses the same text-aware stage 1 in it, so by default the two
    models train one graph (one cache file)."""
    block = GraphLMRecommender.stage1_keys()
    assert {"embedding_size", "n_layers", "graph_epochs", "graph_learning_rate"} <= block
    chosen = {"graph_model", "graph_loss", "id_tower", "id_tower_users", "graph_eval_step"}
    assert block & property_keys("GLTA") == block & property_keys("GALRec") == chosen
    glta, galrec = config("GLTA"), config("GALRec")
    assert all(glta[key] == galrec[key] for key in block)
    assert graph_cache_digest(glta, GLTA) == graph_cache_digest(galrec, GALRec)
    # GALRec.yaml sets eval_step for its language-model stage; stage 1 still reads it where graph_eval_step is unset.
    assert "eval_step" in property_keys("GALRec") and "eval_step" not in GALRec.later_stage_keys()


def test_a_stage_1_beyond_the_papers_has_one_cache_key_for_glta_and_galrec():
    # GRAPH_LM_MODELS, whose later keys every such key leaves out, names every model on this stage 1.
    assert set(GRAPH_LM_MODELS) == {cls.__name__ for cls in GraphLMRecommender.__subclasses__()} == set(MODELS)
    papers = {model: config(model, **BEFORE[model]) for model in MODELS}
    text = {model: with_entries(built, graph_model="TextLightGCN", graph_loss="softmax") for model, built in papers.items()}
    for holdout in (False, True):
        # The papers' stage 1 trains on each run's own random states: a key per model.
        assert graph_cache_digest(papers["GLTA"], GLTA, holdout) != graph_cache_digest(papers["GALRec"], GALRec, holdout)
        assert graph_cache_digest(text["GLTA"], GLTA, holdout) == graph_cache_digest(text["GALRec"], GALRec, holdout)


def test_a_key_stage_1_reads_changes_the_run_and_the_cache(default):
    model, built, (run, cache, holdout) = default
    for key in GraphLMRecommender.stage1_keys() - {"graph_checkpoint", "graph_cache", "graph_cache_dir"} - stage1_options():
        changed = digests(with_entries(built, **{key: other(built[key])}), model)
        assert changed[0] != run and changed[1] != cache and changed[2] != holdout, key
    # So do the data, the split and the seed, which no property file of the model names.
    for key, value in [("seed", 7), ("eval_args", {**built["eval_args"], "order": "TO"})]:
        changed = digests(with_entries(built, **{key: value}), model)
        assert changed[0] != run and changed[1] != cache, key


def test_the_stage_1_options_change_the_cache_only_where_stage_1_reads_them(default):
    model, built, (run, cache, holdout) = default
    options = GraphLMRecommender.stage1_keys() & stage1_options()
    assert {"graph_model", "graph_loss", "softmax_negatives", "softmax_tau", "text_user_side", "text_item_id"} <= options
    # The papers' stage 1 (FastLightGCN with BPR) reads none of the loss's or the text's keys.
    for key in sorted(options - {"graph_model", "graph_loss"}):
        changed = digests(with_entries(built, **{key: other(built[key])}), model)
        assert changed[0] != run and changed[1] == cache and changed[2] == holdout, key
    # A text stage 1 trained with the softmax reads them all, and text_max_tokens, which no file of the
    # model names; its text is MiniLM's whatever text_encoder gives GAL-Rec's item tokens.
    text = with_entries(built, graph_model="TextLightGCN", graph_loss="softmax")
    _, text_cache, text_holdout = digests(text, model)
    assert text_cache != cache and text_holdout != holdout
    for key in sorted(options - {"graph_model"} | {"text_max_tokens"}):
        changed = digests(with_entries(text, **{key: other(text[key])}), model)
        assert changed[1] != text_cache and changed[2] != text_holdout, key
    assert digests(with_entries(text, text_encoder="backbone"), model)[1] == text_cache


def test_the_id_controls_stage_1_is_the_id_graph_with_the_same_loss(default):
    model, built, (run, cache, holdout) = default
    text = with_entries(built, graph_model="TextLightGCN", graph_loss="softmax", softmax_tau=0.2)
    ids = with_entries(text, graph_model="FastLightGCN")
    control = with_entries(text, id_control=True)
    assert digests(control, model)[1:] == digests(ids, model)[1:] != digests(text, model)[1:]
    assert digests(control, model)[0] not in (digests(ids, model)[0], digests(text, model)[0])
    # The default's id control keeps the default's stage 1.
    assert digests(with_entries(built, id_control=True), model)[1:] == (cache, holdout)


def test_a_later_stage_key_changes_the_run_but_not_the_cache(default):
    model, built, (run, cache, holdout) = default
    later = MODELS[model].later_stage_keys()
    assert {"score_fusion", "llm_path", "lora_r"} <= later and not later & GraphLMRecommender.stage1_keys()
    for key in sorted(later - BUDGET_KEYS - BOOKKEEPING_KEYS - TEST_KEYS):
        changed = digests(with_entries(built, **{key: other(built[key])}), model)
        assert changed[0] != run and changed[1] == cache, key
        # The held-out interactions' keys choose the LightGCN the language model reads.
        assert (changed[2] != holdout) == (key in HOLDOUT_KEYS), key


def test_what_the_test_reads_changes_no_digest(default):
    """``fold_in_valid`` changes neither training nor validation: the same run folder and stage 1 serve both."""
    model, built, digests_of_default = default
    assert TEST_KEYS <= MODELS[model].later_stage_keys()
    for key in TEST_KEYS:
        assert digests(with_entries(built, **{key: other(built[key])}), model) == digests_of_default, key


def test_a_budget_key_changes_no_run_digest(default):
    model, built, (run, cache, holdout) = default
    for key in BUDGET_KEYS & built.final_config_dict.keys():
        changed = digests(with_entries(built, **{key: other(built[key])}), model)
        assert changed[0] == run, key
        # Stage 1 early-stops with eval_step and stopping_step itself; the epochs of later stages it never reads.
        assert (changed[1] == cache) == (key not in {"eval_step", "stopping_step"}), key


@pytest.mark.parametrize("model", ["BPR", "SASRec", "HCCF"])
def test_stock_and_other_plugin_runs_follow_the_same_rules(model):
    built = config(model)
    assert run_digest(with_entries(built, epochs=built["epochs"] + 5, checkpoint_dir="elsewhere")) == run_digest(built)
    assert run_digest(with_entries(built, learning_rate=built["learning_rate"] * 2)) != run_digest(built)


def test_graph_eval_step_gives_stage_1_its_own_validation_interval(default):
    model, built, (run, cache, holdout) = default
    rare = with_entries(built, eval_step=5)
    assert stage1_config(rare)["eval_step"] == 5 and digests(rare, model)[1] != cache
    # Set, it is stage 1's eval_step whatever the run's: the cache of a run that validates every epoch.
    own = with_entries(rare, graph_eval_step=built["eval_step"])
    assert stage1_config(own)["eval_step"] == built["eval_step"]
    assert digests(own, model)[1:] == (cache, holdout) and digests(own, model)[0] not in (run, digests(rare, model)[0])
    assert digests(with_entries(own, eval_step=3), model)[1:] == (cache, holdout)


# The run digests of the default configs on ml-100k: a change here renames every run folder, and a killed
# run of the defaults no longer resumes (a key added since must be left out at its unset value: ADDED_KEYS_UNSET).
RUN_DIGESTS = {"GLTA": "d3bd385798bc", "GALRec": "125fef01dbe7"}  # of GLTA_BEFORE and GALREC_BEFORE


def test_a_key_added_later_leaves_earlier_run_folders_at_its_unset_value(default):
    model, built, (run, cache, holdout) = default
    assert run == RUN_DIGESTS[model]
    unset = {key for key, value in ADDED_KEYS_UNSET.items() if key in built.final_config_dict and built[key] == value}
    assert unset
    before = with_entries(built)
    for key in unset:
        del before.final_config_dict[key]
    assert digests(before, model) == (run, cache, holdout)
    for key in sorted(unset):
        assert digests(with_entries(built, **{key: other(built[key])}), model)[0] != run, key
