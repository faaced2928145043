"""Per-user test figures: RecBole's own per-user metric values, whose means are the run's test metrics."""

import gzip
import json

import pytest

from benchmarks import per_user
from benchmarks.harness import ROOT, run_child
from recbole_llm.quick_start import run_recbole_llm

PROTOCOL = {"eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "full"},
            "topk": [5, 10], "valid_metric": "NDCG@10", "epochs": 1, "state": "WARNING", "show_progress": False}


@pytest.mark.parametrize("metrics", [["Recall", "NDCG", "Precision", "Hit"], ["Hit", "NDCG"]])
def test_per_user_means_are_the_test_metrics(tmp_path, metrics):
    with per_user.capture() as evaluations:
        result = run_recbole_llm("Pop", "ml-100k", config_dict={**PROTOCOL, "metrics": metrics,
                                                                "checkpoint_dir": str(tmp_path)}, saved=True)
    # Validation of the one epoch, then the test: each captured with its own users.
    assert len(evaluations) == 2
    users, values = per_user.per_user_table(evaluations, result["test_result"])
    assert list(values) == ["ndcg@10", "precision@10", "recall@10"]
    assert len(users) == len(set(users)) == 943 and all(isinstance(u, str) for u in users)
    for name, column in values.items():
        assert len(column) == 943 and 0 <= column.min() and column.max() <= 1
        if name in result["test_result"]:
            assert round(float(column.mean()), 4) == pytest.approx(result["test_result"][name], abs=1e-4)
    # Precision@10 of a user is its hits in the top 10 over 10: a multiple of 0.1.
    assert all(abs(v * 10 - round(v * 10)) < 1e-9 for v in values["precision@10"])

    # The validation evaluation scores differently, so it is never taken for the test.
    assert evaluations[0]["result"] != dict(result["test_result"])
    with pytest.raises(RuntimeError, match="No captured evaluation gave the test result"):
        per_user.per_user_table(evaluations[:1], result["test_result"])


def test_patches_are_undone_after_the_block():
    from recbole.evaluator import Collector, Evaluator
    from recbole.trainer import Trainer

    before = (Trainer.evaluate, Collector.eval_batch_collect, Collector.get_data_struct, Evaluator.evaluate)
    with per_user.capture():
        assert Trainer.evaluate is not before[0]
    assert (Trainer.evaluate, Collector.eval_batch_collect, Collector.get_data_struct, Evaluator.evaluate) == before


def test_csv_round_trip_is_byte_stable(tmp_path):
    import numpy as np

    values = {"ndcg@10": np.array([0.123456, 0.0]), "precision@10": np.array([0.1, 0.0]), "recall@10": np.array([0.5, 0.0])}
    per_user.write_csv_gz(tmp_path / "a.csv.gz", ["7", "12"], values)
    per_user.write_csv_gz(tmp_path / "b.csv.gz", ["7", "12"], values)
    assert (tmp_path / "a.csv.gz").read_bytes() == (tmp_path / "b.csv.gz").read_bytes()
    with gzip.open(tmp_path / "a.csv.gz", "rt") as f:
        assert f.readline().strip() == "user,ndcg@10,precision@10,recall@10"
    assert per_user.read_csv_gz(tmp_path / "a.csv.gz") == {
        "7": {"ndcg@10": 0.12346, "precision@10": 0.1, "recall@10": 0.5},
        "12": {"ndcg@10": 0.0, "precision@10": 0.0, "recall@10": 0.0}}


@pytest.mark.slow
def test_harness_record_names_its_per_user_file(tmp_path):
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(json.dumps({k: v for k, v in PROTOCOL.items() if k not in ("state", "show_progress")}
                                   | {"metrics": ["Hit", "NDCG"]}))
    path = tmp_path / "per_user" / "ml-100k" / "EASE-2020.csv.gz"
    spec = {"label": "EASE", "model": "EASE", "dataset": "ml-100k", "seed": 2020, "overrides": [],
            "config_files": [str(protocol)], "data_path": None, "command": "c", "harness_command": "h",
            "checkpoint_dir": str(tmp_path / "ckpt"), "per_user_path": str(path)}
    record = run_child(spec)
    assert (ROOT / record["per_user"]).resolve() == path.resolve()
    rows = per_user.read_csv_gz(path)
    assert len(rows) == 943
    # The file's 5 decimals still average to the record's 4-decimal figure.
    mean = sum(r["ndcg@10"] for r in rows.values()) / len(rows)
    assert abs(mean - record["test"]["ndcg@10"]) <= 5e-5 + 5e-6


@pytest.mark.slow
def test_glta_record_names_per_user_files_of_the_test_and_of_stage_1_and_its_id_control(tmp_path, tiny_llm_path):
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(json.dumps({k: v for k, v in PROTOCOL.items() if k not in ("state", "show_progress")}
                                   | {"metrics": ["NDCG", "Hit"]}))
    tiny = [f"--llm_path={tiny_llm_path}", "--llm_num_layers=~", f"--llm_cache_dir={tmp_path / 'cache'}",
            "--graph_epochs=1", "--item_alignment_epochs=1", "--item_alignment_batch_size=32",
            "--user_alignment_batch_size=64", "--max_history=10", "--user_alignment_epochs=1",
            "--fold_in_valid=True"]
    path = tmp_path / "per_user" / "ml-100k" / "GLTA-1.csv.gz"
    spec = {"label": "GLTA", "model": "GLTA", "dataset": "ml-100k", "seed": 1, "overrides": tiny,
            "config_files": [str(protocol)], "data_path": None, "command": "c", "harness_command": "h",
            "checkpoint_dir": str(tmp_path / "ckpt"), "per_user_path": str(path)}
    record = run_child(spec)
    for key, figures in (("per_user", record["test"]), ("graph_per_user", record["graph_test"])):
        rows = per_user.read_csv_gz(ROOT / record[key])
        assert len(rows) == 943
        mean = sum(r["ndcg@10"] for r in rows.values()) / len(rows)
        assert abs(mean - figures["ndcg@10"]) <= 5e-5 + 5e-6
    assert record["graph_per_user"].endswith("GLTA-1-stage1.csv.gz")
    assert record["control"] == "GLTA[id_control=True]"
    # fold_in_valid: the per-user files are of the figures with the validation items, and the record keeps
    # those without them beside.
    assert set(record["test_unfolded"]) == set(record["test"]) and record["graph_test_unfolded"] != record["graph_test"]
