"""benchmarks/compare.py: paired differences of two rows over the users and seeds they share."""

import json

import numpy as np
import pytest
from scipy import stats

from benchmarks import compare
from benchmarks.per_user import write_csv_gz


def _write_row(tmp_path, label, seed, figures):
    """A record of ``label`` on ``seed`` whose per-user file holds ``figures`` ({user: ndcg}) for all three metrics."""
    users = list(figures)
    column = np.array([figures[u] for u in users])
    path = tmp_path / "per_user" / f"{label}-{seed}.csv.gz"
    write_csv_gz(path, users, {"ndcg@10": column, "precision@10": column / 2, "recall@10": column / 4})
    return {"label": label, "seed": seed, "dataset": "toy", "per_user": str(path)}


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(1)
    records = []
    for seed in (1, 2, 3):
        base = {f"u{i}": float(rng.uniform(0, 0.5)) for i in range(60)}
        # B: the same users a little lower; user u0 is missing on seed 2 and A lacks seed 3.
        records.append(_write_row(tmp_path, "B", seed, {u: max(0.0, v - 0.05) for u, v in base.items()
                                                        if not (seed == 2 and u == "u0")}))
        if seed != 3:
            records.append(_write_row(tmp_path, "A", seed, base))
    records.append({"label": "C", "seed": 1, "dataset": "toy", "per_user": None})
    (tmp_path / "toy.json").write_text(json.dumps(records))
    return tmp_path, records


def test_pairs_users_and_seeds_both_rows_have(store):
    folder, records = store
    runs_a = compare.per_user_runs(records, "A", root=folder)
    runs_b = compare.per_user_runs(records, "B", root=folder)
    seeds, users, a, b = compare.paired(runs_a, runs_b, "ndcg@10")
    assert seeds == [1, 2] and len(users) == 59 and "u0" not in users
    # Each user's figure is its mean over the shared seeds.
    u = users.index("u7")
    assert a[u] == pytest.approx((runs_a[1]["u7"]["ndcg@10"] + runs_a[2]["u7"]["ndcg@10"]) / 2)

    r = compare.paired_stats(a, b, resamples=2000, seed=0)
    assert r["users"] == 59 and r["diff"] == pytest.approx(float(np.mean(a - b)))
    assert r["ci_low"] <= r["diff"] <= r["ci_high"] and r["ci_low"] > 0
    assert r["t_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue) and r["t_p"] < 1e-6
    assert r["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a - b).pvalue)
    # The same seed gives the same interval; swapping the rows mirrors it.
    assert compare.paired_stats(a, b, resamples=2000, seed=0) == r
    mirrored = compare.paired_stats(b, a, resamples=2000, seed=0)
    assert mirrored["diff"] == pytest.approx(-r["diff"]) and mirrored["ci_high"] == pytest.approx(-r["ci_low"])


def test_identical_rows_show_no_difference():
    a = np.array([0.1, 0.2, 0.0])
    r = compare.paired_stats(a, a.copy(), resamples=100)
    assert r["diff"] == 0 and r["ci_low"] == r["ci_high"] == 0 and r["t_p"] == r["wilcoxon_p"] == 1.0


def test_cli_prints_every_metric_and_names_what_is_missing(store, capsys, monkeypatch):
    folder, _ = store
    monkeypatch.setattr(compare, "ROOT", folder)
    assert compare.main(["--dataset", "toy", "--results", str(folder), "A", "B", "--resamples", "500"]) == 0
    out = capsys.readouterr().out
    assert "A (A) against B (B): 59 users, per-user means over seeds 1, 2" in out
    for metric in ("ndcg@10", "precision@10", "recall@10"):
        assert f"| {metric} |" in out
    with pytest.raises(SystemExit):
        compare.main(["--dataset", "toy", "--results", str(folder), "A", "Z"])
    assert "has no row 'Z'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare.main(["--dataset", "toy", "--results", str(folder), "A", "C"])
    assert "row 'C' has no per-user file" in capsys.readouterr().err


def test_cli_sets_a_row_against_its_own_stage1(store, capsys, monkeypatch):
    folder, records = store
    monkeypatch.setattr(compare, "ROOT", folder)
    for record in records:  # A's stage 1: B's figures under A's records
        if record["label"] == "A":
            record["graph_per_user"] = next(r["per_user"] for r in records if r["label"] == "B" and r["seed"] == record["seed"])
    (folder / "toy.json").write_text(json.dumps(records))
    assert compare.main(["--dataset", "toy", "--results", str(folder), "A", "stage1:A", "--resamples", "500"]) == 0
    out = capsys.readouterr().out
    assert "A (A) against stage1:A (B): 59 users, per-user means over seeds 1, 2" in out
    assert compare.main(["--dataset", "toy", "--results", str(folder), "A", "B", "--resamples", "500"]) == 0
    against_b = capsys.readouterr().out
    assert out.splitlines()[1:] == against_b.splitlines()[1:]  # the same figures as B's own rows
    assert "| ndcg@10 | " in out and "| +0.0000 |" not in out
    with pytest.raises(SystemExit):
        compare.main(["--dataset", "toy", "--results", str(folder), "A", "stage1:B"])
    assert "row 'B' has no stage-1 per-user file" in capsys.readouterr().err


def test_cli_reads_a_store_written_under_another_name(store, capsys, monkeypatch):
    folder, _ = store
    monkeypatch.setattr(compare, "ROOT", folder)
    (folder / "toy.json").rename(folder / "toy-text.json")  # benchmarks/run.py --dataset toy --name toy-text
    with pytest.raises(SystemExit):
        compare.main(["--dataset", "toy", "--results", str(folder), "A", "B"])
    assert "needs the same --name" in capsys.readouterr().err
    assert compare.main(["--dataset", "toy", "--name", "toy-text", "--results", str(folder), "A", "B",
                         "--resamples", "500"]) == 0
    assert "A (A) against B (B): 59 users" in capsys.readouterr().out


def test_report_compares_each_language_model_default_with_its_control_stage1_and_the_best_other_row(tmp_path):
    from benchmarks.report import comparison_table

    rng = np.random.default_rng(2)
    base = {f"u{i}": float(rng.uniform(0, 0.5)) for i in range(40)}
    records = []
    for label, model, valid, shift in (("GLTA", "GLTA", 0.30, 0.02), ("GLTA[id_control=True]", "GLTA", 0.29, 0.01),
                                       ("EASE", "EASE", 0.28, 0.0), ("Pop", "Pop", 0.10, -0.1),
                                       ("LightGCN+", "LightGCN+", 0.29, 0.0)):
        for seed in (1, 2):
            record = {**_write_row(tmp_path, label, seed, {u: max(0.0, v + shift) for u, v in base.items()}),
                      "model": model, "valid": {"ndcg@10": valid}, "test": {"ndcg@10": 0.0}}
            if label == "GLTA":
                record["graph_per_user"] = _write_row(tmp_path, "GLTA-stage1", seed, base)["per_user"]
                record["control"] = "GLTA[id_control=True]"
            if label == "LightGCN+":
                record["per_user"] = None  # an old record: not compared
            records.append(record)
    table = comparison_table(records, root=tmp_path, resamples=500)
    lines = table.splitlines()
    assert len(lines) == 5
    # First the id control: what text and the language model add.
    assert lines[2].startswith("| GLTA | GLTA[id_control=True] | 1, 2 | 40 |")
    assert lines[3].startswith("| GLTA | GLTA stage 1 | 1, 2 | 40 |") and "| +0.0200 |" in lines[3]
    # EASE validates above Pop, so it is the row GLTA is measured against; the test figures play no part.
    assert lines[4].startswith("| GLTA | EASE | 1, 2 | 40 |")
    # Without its control's records, a row is compared with the rest only.
    without = comparison_table([r for r in records if r["label"] != "GLTA[id_control=True]"], root=tmp_path, resamples=500)
    assert len(without.splitlines()) == 4 and "id_control" not in without
    assert comparison_table([r for r in records if r["model"] != "GLTA"], root=tmp_path) == ""


def test_a_default_row_may_carry_its_epoch_budget(tmp_path):
    """The benchmark protocol sets epochs and eval_step over a model file's budget, so GAL-Rec's default row
    reads GALRec[epochs=18,eval_step=3]: it is compared with its stage 1 and the best other row too; a row with
    another setting is not a default."""
    from benchmarks.report import comparison_table

    rng = np.random.default_rng(3)
    base = {f"u{i}": float(rng.uniform(0, 0.5)) for i in range(30)}
    records = []
    for label, model, valid in (("GALRec[epochs=18,eval_step=3]", "GALRec", 0.3), ("GALRec[epochs=18,lr=1]", "GALRec", 0.3),
                                ("EASE", "EASE", 0.2)):
        record = {**_write_row(tmp_path, label, 1, base), "model": model, "valid": {"ndcg@10": valid}, "test": {"ndcg@10": 0.0}}
        if model == "GALRec":
            record["graph_per_user"] = _write_row(tmp_path, f"{label}-stage1", 1, base)["per_user"]
        records.append(record)
    rows = [line.split(" | ")[:2] for line in comparison_table(records, root=tmp_path, resamples=200).splitlines()[2:]]
    assert rows == [["| GALRec[epochs=18,eval_step=3]", "GALRec[epochs=18,eval_step=3] stage 1"],
                    ["| GALRec[epochs=18,eval_step=3]", "EASE"]]


def test_old_records_get_todays_fields_once(tmp_path):
    from benchmarks.harness import RecordStore
    from benchmarks.record_fields import main

    store = tmp_path / "toy.json"
    store.write_text(json.dumps([
        {"label": "GALRec[epochs=20]", "model": "GALRec", "seed": 1, "per_user_stage1": "per_user/x-stage1.csv.gz"},
        {"label": "GLTA[id_control=True]", "model": "GLTA", "seed": 1, "per_user_stage1": None},
        {"label": "EASE", "model": "EASE", "seed": 1},
    ]))
    assert main([str(store)]) == 0
    once = RecordStore(store).records
    assert [r.get("control") for r in once] == ["GALRec[epochs=20,id_control=True]", None, None]
    assert "control" not in once[2]  # a model without an id control: its record is left as it was
    assert once[0]["graph_per_user"] == "per_user/x-stage1.csv.gz" and not any("per_user_stage1" in r for r in once)
    assert main([str(store)]) == 0 and RecordStore(store).records == once


def test_cli_pairs_over_the_seeds_named(store, capsys, monkeypatch):
    folder, records = store
    monkeypatch.setattr(compare, "ROOT", folder)
    assert compare.main(["--dataset", "toy", "--results", str(folder), "A", "B", "--seeds", "2",
                         "--resamples", "500"]) == 0
    out = capsys.readouterr().out
    # Seed 2 alone: B lacks u0 there, and each user's figure is that seed's, not a mean over seeds 1-2.
    assert "A (A) against B (B): 59 users, per-user means over seeds 2" in out
    runs_a = {2: compare.per_user_runs(records, "A", root=folder)[2]}
    runs_b = {2: compare.per_user_runs(records, "B", root=folder)[2]}
    _, _, a, b = compare.paired(runs_a, runs_b, "ndcg@10")
    assert f"| ndcg@10 | {a.mean():.4f} | {b.mean():.4f} | {a.mean() - b.mean():+.4f} |" in out
    with pytest.raises(SystemExit):  # A never ran seed 3
        compare.main(["--dataset", "toy", "--results", str(folder), "A", "B", "--seeds", "3"])
    assert "share no seed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare.main(["--dataset", "toy", "--results", str(folder), "A", "B", "--seeds", "two"])
    assert "is not a comma-separated list of integer seeds" in capsys.readouterr().err
