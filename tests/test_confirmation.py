"""benchmarks/confirmation.py: issue 35's bar, checked on the confirmation seeds only."""

import numpy as np
import pytest

from benchmarks import confirmation
from benchmarks.per_user import write_csv_gz


def _record(tmp_path, label, model, seed, figures, valid, **extra):
    users = list(figures)
    column = np.array([figures[u] for u in users])
    path = tmp_path / "per_user" / f"{label}-{seed}-{len(extra)}.csv.gz"
    write_csv_gz(path, users, {"ndcg@10": column, "precision@10": column, "recall@10": column})
    return {"label": label, "model": model, "seed": seed, "dataset": "toy", "per_user": str(path),
            "valid": {"ndcg@10": valid}, "test": {"ndcg@10": float(column.mean())}, **extra}


@pytest.fixture
def records(tmp_path, monkeypatch):
    monkeypatch.setattr(confirmation, "ROOT", tmp_path)  # per-user paths are read relative to it
    rng = np.random.default_rng(0)
    out = []
    for seed in (2020, 2023, 2024):
        base = {f"u{i}": float(rng.uniform(0.1, 0.5)) for i in range(80)}
        shifted = lambda d: {u: v + d for u, v in base.items()}  # noqa: E731
        stage1 = _record(tmp_path, "stage1", "GALRec", seed, shifted(-0.02), 0.0)["per_user"]
        out += [
            _record(tmp_path, "GALRec[epochs=18]", "GALRec", seed, shifted(0.0), 0.30,
                    control="GALRec[epochs=18,id_control=True]", graph_per_user=stage1),
            _record(tmp_path, "GALRec[epochs=18,id_control=True]", "GALRec", seed,
                    {u: v - 0.001 - float(rng.uniform(0, 0.0004)) for u, v in base.items()}, 0.29),
            # Another setting of GAL-Rec, better on test: not a default row, so never the one checked.
            _record(tmp_path, "GALRec[lr=1]", "GALRec", seed, shifted(0.1), 0.40),
            # Two SASRec rows: the one that validates higher counts, though the other tests higher.
            _record(tmp_path, "SASRec", "SASRec", seed, shifted(0.05), 0.20),
            _record(tmp_path, "SASRec[MAX_ITEM_LIST_LENGTH=20]", "SASRec", seed, shifted(-0.01), 0.25),
        ]
    # The 2020 records are choosing runs: a control far worse there must not count.
    out[1] = _record(tmp_path, "GALRec[epochs=18,id_control=True]", "GALRec", 2020, {f"u{i}": 0.0 for i in range(80)}, 0.1)
    return out


def _check(records, kind, against=None):
    return confirmation.check(records, "GALRec", kind, against, resamples=300)


def test_each_check_pairs_the_default_row_on_the_confirmation_seeds_alone(records):
    control = _check(records, "control")
    assert (control["a"], control["b"]) == ("GALRec[epochs=18]", "GALRec[epochs=18,id_control=True]")
    # +0.001 to +0.0014 for every user on 2023-2024; 2020's control (0 for everyone) would have made it +0.1 or more.
    assert control["stats"]["diff"] == pytest.approx(0.0012, abs=1e-4)
    assert control["met"] and control["stats"]["t_p"] < 1e-10
    stage1 = _check(records, "stage1")
    assert stage1["b"] == "GALRec[epochs=18] stage 1" and stage1["stats"]["diff"] == pytest.approx(0.02, abs=1e-6)
    stock = _check(records, "at_least", "SASRec")
    assert stock["b"] == "SASRec[MAX_ITEM_LIST_LENGTH=20]"  # chosen on validation, not on test
    assert stock["met"] and stock["stats"]["diff"] == pytest.approx(0.01, abs=1e-6)


def test_a_check_is_not_met_below_its_bar_and_says_what_is_missing(records):
    worse = [{**r, "valid": {"ndcg@10": 0.3}} if r["label"] == "SASRec" else r for r in records]
    assert _check(worse, "at_least", "SASRec")["met"] is False  # SASRec now validates best and is 0.05 higher
    partial = [r for r in records if not (r["label"] == "GALRec[epochs=18,id_control=True]" and r["seed"] == 2024)]
    row = _check(partial, "control")
    assert row["stats"] is None and row["met"] is None
    assert row["missing"] == "GALRec[epochs=18,id_control=True] has no per-user file on seed 2024"
    assert confirmation.check(records, "GLTA", "control", None)["missing"].startswith("no default GLTA row")


def test_ratio_and_its_interval():
    a, b = np.array([0.2, 0.4, 0.3, 0.1]), np.array([0.25, 0.5, 0.35, 0.1])
    ratio, low, high = confirmation.ratio_interval(a, b, resamples=2000)
    assert ratio == pytest.approx(1.0 / 1.2) and low <= ratio <= high < 1.0


def test_the_table_marks_each_check(records):
    text = confirmation.table({"amazon-beauty": records}, resamples=300)
    lines = text.splitlines()
    assert len(lines) == 2 + len(confirmation.CHECKS)
    rows = {(line.split(" | ")[0][2:], line.split(" | ")[1], line.split(" | ")[3]): line for line in lines[2:]}
    assert rows[("amazon-beauty", "GALRec[epochs=18]", confirmation.BARS["control"])].endswith("| yes |")
    assert "not yet: no default GLTA row" in rows[("amazon-beauty", "GLTA (default)", confirmation.BARS["control"])]
    assert rows[("ml-1m-tmdb", "GLTA", confirmation.BARS["control"])].endswith("not yet: no ml-1m-tmdb.json |")
