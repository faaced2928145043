"""Multi-process training on CPU (gloo): two processes give the same model quality as one.

Tolerance: the two runs see the same data but not the same arithmetic (each rank draws its own
negative samples and shuffles; gradients are averaged over ranks), so scores are compared within
0.03 absolute NDCG@10 and Recall@10 after a short training, where seed-to-seed noise is of that size.
"""

import socket

import pytest

from recbole_llm.errors import ConfigValueError
from recbole_llm.quick_start import run

pytestmark = pytest.mark.slow  # every test starts a process group and trains

TOLERANCE = 0.03
COMMON = {"show_progress": False, "state": "WARNING", "metrics": ["Recall", "NDCG"], "topk": [10],
          "valid_metric": "NDCG@10"}


@pytest.fixture(autouse=True)
def fresh_working_directory(tmp_path, monkeypatch):
    # No ./log yet, as on a fresh clone: every rank's logger then creates ./log/<model> at the same
    # moment, which raced (FileExistsError) until the parent created the folder first.
    monkeypatch.chdir(tmp_path)


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return str(s.getsockname()[1])


def assert_close(single, double):
    for metric in ("ndcg@10", "recall@10"):
        assert abs(single["test_result"][metric] - double["test_result"][metric]) <= TOLERANCE, (metric, single, double)


def test_stock_model_two_processes_match_one(tmp_path):
    config = {**COMMON, "epochs": 5, "learning_rate": 0.005, "checkpoint_dir": str(tmp_path)}
    single = run("BPR", "ml-100k", config_dict=config)
    double = run("BPR", "ml-100k", config_dict=config, nproc=2, port=free_port())
    assert single["test_result"]["ndcg@10"] > 0.1
    assert_close(single, double)


@pytest.fixture(scope="module")
def glta_config(tiny_llm_path, tmp_path_factory):
    return {
        **COMMON, "llm_path": tiny_llm_path, "llm_num_layers": None, "llm_cache_dir": str(tmp_path_factory.mktemp("cache")),
        "graph_epochs": 2, "graph_learning_rate": 0.01, "item_alignment_epochs": 1, "item_alignment_batch_size": 32,
        "user_alignment_epochs": 1, "user_alignment_batch_size": 64, "max_history": 10,
    }


def test_glta_two_processes_match_one_and_resume(glta_config, tmp_path):
    single = run("GLTA", "ml-100k", config_dict={**glta_config, "checkpoint_dir": str(tmp_path / "one")})
    config = {**glta_config, "checkpoint_dir": str(tmp_path / "two")}
    double = run("GLTA", "ml-100k", config_dict=config, nproc=2, port=free_port())
    assert_close(single, double)
    assert all(double["stage_seconds_per_epoch"][stage] for stage in ("graph", "item_alignment", "user_alignment"))
    assert len(list((tmp_path / "two").glob("GLTA-*"))) == 1  # both ranks agree on one run folder

    # Rerun with one more stage-3 epoch: stages 1 and 2 and the first stage-3 epoch are not trained again.
    resumed = run("GLTA", "ml-100k", config_dict={**config, "user_alignment_epochs": 2}, nproc=2, port=free_port())
    assert not resumed["stage_seconds_per_epoch"]["graph"]
    assert not resumed["stage_seconds_per_epoch"]["item_alignment"]
    assert len(resumed["stage_seconds_per_epoch"]["user_alignment"]) == 1


def test_user_error_inside_a_rank_reaches_the_caller(glta_config, tmp_path):
    # The parent's config check cannot see this one: only loading the backbone finds the layer count.
    with pytest.raises(ConfigValueError, match="llm_num_layers=5"):
        run("GLTA", "ml-100k", config_dict={**glta_config, "llm_num_layers": 5, "checkpoint_dir": str(tmp_path)},
            nproc=2, port=free_port())


def test_galrec_trains_with_two_processes(tiny_llm_path, tmp_path):
    config = {
        **COMMON, "llm_path": tiny_llm_path, "llm_num_layers": None, "llm_cache_dir": str(tmp_path / "cache"),
        "checkpoint_dir": str(tmp_path), "graph_epochs": 1, "epochs": 1, "prompt_batch_size": 32,
        "users_per_epoch": 128, "queue_size": 64,
    }
    result = run("GAL-Rec", "ml-100k", config_dict=config, nproc=2, port=free_port())
    assert 0 < result["test_result"]["ndcg@10"] < 1
    assert len(result["stage_seconds_per_epoch"]["graph_aware"]) == 1
