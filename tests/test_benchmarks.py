"""The benchmark harness: rows, records, resume, atomic store, table and chart."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.harness import (ROOT, RecordStore, checkpoint_dir_of, log_dir_of, parse_row, run_child, run_rows,
                                safe_name)
from benchmarks.report import markdown_table, stage1_table
from benchmarks.run import main, split_rows

PROTOCOL = """
eval_args: {split: {RS: [0.8, 0.1, 0.1]}, order: RO, group_by: user, mode: full}
metrics: [NDCG, Hit]
topk: [10]
valid_metric: NDCG@10
epochs: 2
"""


def test_stage1_table_reports_what_the_language_model_adds_per_seed():
    def fused(label, seed, final, stage1):
        return {**record(label, seed, final), "graph_test": {"ndcg@10": stage1}}
    table = stage1_table([fused("GLTA", 2, 0.31, 0.30), fused("GLTA", 1, 0.29, 0.30), record("BPR", 1, 0.2),
                          fused("GLTA[x=1]", 1, 0.32, 0.30)])
    lines = table.splitlines()
    assert "| GLTA | 1, 2 | -0.0100, +0.0100 | +0.0000 ± 0.0141 | no |" in lines
    assert "| GLTA[x=1] | 1 | +0.0200 | +0.0200 | yes |" in lines
    assert not any("BPR" in line for line in lines)  # a model without a stage 1 has no row
    assert stage1_table([record("BPR", 1, 0.2)]) == ""


def test_rows_parse_with_overrides():
    assert parse_row("BPR") == ("BPR", [])
    assert parse_row("GLTA[use_profile=False, llm_num_layers=2]") == (
        "GLTA", ["--use_profile=False", "--llm_num_layers=2"])
    assert split_rows("Pop,BPR[epochs=1,learning_rate=0.01], EASE") == ["Pop", "BPR[epochs=1,learning_rate=0.01]", "EASE"]
    with pytest.raises(ValueError, match="key=value"):
        parse_row("BPR[epochs]")


def record(label, seed, ndcg):
    return {"label": label, "seed": seed, "test": {"ndcg@10": ndcg}, "best_epoch": 3, "train_s_per_epoch": 1.0,
            "eval_s": 0.5, "peak_rss_mb": 400.0, "params_total": 1000, "params_trainable": 1000}


def test_table_marks_best_mean_and_shows_spread():
    table = markdown_table([record("A", 1, 0.10), record("A", 2, 0.20), record("B", 1, 0.12), record("B", 2, 0.14)])
    lines = table.splitlines()
    assert lines[0].startswith("| model | seeds | ndcg@10 | best epoch | train s/epoch")
    assert "| A | 2 | **0.1500 ± 0.0707** |" in lines[2]
    assert "| B | 2 | 0.1300 ± 0.0141 |" in lines[3]


def test_store_replaces_file_atomically(tmp_path):
    store = RecordStore(tmp_path / "r.json")
    store.add(record("A", 1, 0.1))
    store.add(record("A", 1, 0.2))
    assert [r["test"]["ndcg@10"] for r in RecordStore(tmp_path / "r.json").records] == [0.2]
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["r.json"]  # no partial file left


def test_a_per_user_file_with_the_longest_name_the_file_system_takes_is_written(tmp_path):
    """The atomic write's temporary name is longer than the file's: a 250-character name (an id control's
    row with many settings) once failed there, after an hour of training, and its record was lost."""
    from benchmarks import per_user

    path = tmp_path / ("x" * 243 + ".csv.gz")
    per_user.write_csv_gz(path, ["u1"], {"ndcg@10": [0.5]})
    assert per_user.read_csv_gz(path)["u1"]["ndcg@10"] == 0.5
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_two_harnesses_fill_one_store_without_losing_records(tmp_path):
    first, second = RecordStore(tmp_path / "r.json"), RecordStore(tmp_path / "r.json")
    first.add(record("A", 1, 0.1))
    second.add(record("B", 1, 0.2))  # second loaded before A existed
    first.add(record("A", 2, 0.3))
    assert sorted((r["label"], r["seed"]) for r in RecordStore(tmp_path / "r.json").read()) == [("A", 1), ("A", 2), ("B", 1)]
    assert second.has("A", 2)


@pytest.mark.slow
def test_tiny_benchmark_runs_resumes_and_reports(tmp_path):
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    common = ["--dataset", "ml-100k", "--protocol", str(protocol), "--out", str(tmp_path / "results")]
    assert main(common + ["--models", "Pop,BPR[learning_rate=0.01]", "--seeds", "1"]) == 0
    # A store other than results/<dataset>.json keeps its logs beside it, off the project's row logs.
    logs = tmp_path / "results" / ".ml-100k.logs"
    assert sorted(p.name for p in logs.iterdir()) == sorted(f"{safe_name(r)}-1.log" for r in ("Pop", "BPR[learning_rate=0.01]"))
    assert log_dir_of(ROOT / "results" / "ml-100k.json", "ml-100k") == ROOT / "log" / "benchmarks" / "ml-100k"
    assert log_dir_of(ROOT / "results" / "tuning" / "ml-100k.json", "ml-100k") == ROOT / "results" / "tuning" / ".ml-100k.logs"

    # The same rows again: every (row, seed) done earlier is skipped, not trained again.
    messages = []
    run_rows(["Pop", "BPR[learning_rate=0.01]"], "ml-100k", str(protocol), [1],
             RecordStore(tmp_path / "results" / "ml-100k.json"), progress=messages.append)
    assert len(messages) == 2 and all(message.endswith("done earlier, skipped") for message in messages)

    # A second seed: only Pop's new seed runs, and the report covers both runs.
    assert main(common + ["--models", "Pop", "--seeds", "1,2"]) == 0
    records = json.loads((tmp_path / "results" / "ml-100k.json").read_text())
    assert sorted((r["label"], r["seed"]) for r in records) == [("BPR[learning_rate=0.01]", 1), ("Pop", 1), ("Pop", 2)]
    bpr = next(r for r in records if r["model"] == "BPR")
    assert set(bpr["test"]) == {"ndcg@10", "hit@10"} and bpr["epochs_trained"] == 2
    assert bpr["train_s_per_epoch"] > 0 and bpr["eval_s"] > 0 and bpr["peak_rss_mb"] > 100
    assert bpr["params_trainable"] == 64 * (943 + 1682 + 2) and bpr["device"].startswith(("cpu", "cuda"))
    assert "--learning_rate=0.01" in bpr["command"] and "--seed=" in bpr["command"]
    assert {"torch", "recbole", "transformers"} <= set(bpr["versions"])
    # The seed reshuffles RecBole's random split, so even Pop scores differently per seed.
    pop = {r["seed"]: r["test"]["ndcg@10"] for r in records if r["model"] == "Pop"}
    assert pop[1] != pop[2]

    assert not any((tmp_path / "results" / ".ml-100k.checkpoints").iterdir())  # finished runs leave no checkpoints

    # --config_files: every row reads them after the protocol; --name keeps their records apart.
    extra = tmp_path / "extra.yaml"
    extra.write_text("metrics: [Hit]\nvalid_metric: Hit@10\n")
    assert main(common + ["--name", "ml-100k-extra", "--models", "Pop", "--config_files", str(extra)]) == 0
    (pop,) = json.loads((tmp_path / "results" / "ml-100k-extra.json").read_text())
    assert pop["config_files"] == [str(protocol), str(extra)] and set(pop["test"]) == {"hit@10"}
    assert f"--config_files={protocol} {extra}" in pop["command"]
    # ... and their per-user files apart from the dataset's own table's.
    assert Path(pop["per_user"]).parent.name == "ml-100k-extra"

    table = (tmp_path / "results" / "ml-100k.md").read_text()
    assert "| Pop | 2 |" in table and "python benchmarks/run.py" in table and "python run_recbole_llm.py" in table
    assert (tmp_path / "results" / "ml-100k.png").stat().st_size > 10_000


@pytest.mark.slow
def test_failed_run_leaves_earlier_records_intact(tmp_path):
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    store = RecordStore(tmp_path / "r.json")
    store.add(record("A", 1, 0.1))
    with pytest.raises(RuntimeError, match="failed"):
        run_rows(["NoSuchModel"], "ml-100k", str(protocol), [1], store, log_dir=tmp_path / "logs", progress=lambda m: None)
    assert [r["label"] for r in RecordStore(tmp_path / "r.json").records] == ["A"]
    log = tmp_path / "logs" / "NoSuchModel-1.log"
    assert "Unknown model" in log.read_text()
    # With its checkpoint folder there, the row resumes: its log keeps what the earlier runs wrote.
    checkpoint_dir_of(store.path, "NoSuchModel", 1).mkdir(parents=True, exist_ok=True)
    with pytest.raises(RuntimeError, match="failed"):
        run_rows(["NoSuchModel"], "ml-100k", str(protocol), [1], store, log_dir=tmp_path / "logs", progress=lambda m: None)
    first, resumed = log.read_text().split("--- resumed ")
    assert "Unknown model" in first and "Unknown model" in resumed


@pytest.mark.slow
def test_keep_checkpoints_leaves_the_finished_rows_best_model(tmp_path):
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    store = RecordStore(tmp_path / "r.json")
    run_rows(["BPR"], "ml-100k", str(protocol), [1], store, log_dir=tmp_path / "logs", progress=lambda m: None,
             keep_checkpoints=True)
    assert [r["label"] for r in store.read()] == ["BPR"]
    assert list(checkpoint_dir_of(store.path, "BPR", 1).glob("*.pth"))


@pytest.mark.slow
def test_a_stopped_benchmark_stops_the_row_it_was_running(tmp_path):
    # run.py under SIGTERM (kill, a scheduler's timeout) must not leave its row's process training on.
    pid_file = tmp_path / "row.pid"
    row = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(300)"
    parent_script = (
        "import sys\n"
        "from benchmarks.harness import run_to_end\n"
        "from benchmarks.run import stop_on_sigterm\n"
        "stop_on_sigterm()\n"
        f"with open({str(tmp_path / 'row.log')!r}, 'w') as log:\n"
        f"    run_to_end([sys.executable, '-c', {row!r}], log)\n")
    parent = subprocess.Popen([sys.executable, "-c", parent_script], cwd=ROOT)
    deadline = time.monotonic() + 120
    while not (pid_file.is_file() and pid_file.read_text()):
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.1)
    row_pid = int(pid_file.read_text())
    try:
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=60) == 128 + signal.SIGTERM
        with pytest.raises(ProcessLookupError):
            os.kill(row_pid, 0)
    finally:
        try:
            os.kill(row_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_tune_picks_best_valid_and_benchmark_uses_it(tmp_path, monkeypatch):
    import benchmarks.harness
    import benchmarks.tune
    import yaml

    monkeypatch.setattr(benchmarks.harness, "TUNED_DIR", tmp_path / "tuned")
    monkeypatch.setattr(benchmarks.tune, "TUNED_DIR", tmp_path / "tuned")
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    assert benchmarks.tune.grid_rows("M", {"a": ["1", "2"], "b": ["x"]}) == ["M[a=1,b=x]", "M[a=2,b=x]"]

    out = tmp_path / "tuning"
    benchmarks.tune.main(["--dataset", "ml-100k", "--model", "EASE", "--protocol", str(protocol),
                          "--grid", "reg_weight=1.0,2000.0", "--out", str(out)])
    runs = json.loads((out / "ml-100k.json").read_text())
    best = max(runs, key=lambda r: r["valid"]["ndcg@10"])
    tuned = tmp_path / "tuned" / "ml-100k" / "EASE.yaml"
    assert yaml.safe_load(tuned.read_text()) == {"reg_weight": float(best["label"].split("=")[1].rstrip("]"))}
    header = tuned.read_text()
    assert "tune.py --dataset ml-100k" in header and "ndcg@10 0." not in header  # the scores stay in the table:
    assert f"{os.path.relpath(out / 'ml-100k.md', benchmarks.tune.ROOT)}" in header
    assert "| EASE[reg_weight=1.0] |" in (out / "ml-100k.md").read_text()
    assert benchmarks.harness.run_config_files(str(protocol), "ml-100k", "EASE")[-1].endswith("EASE.yaml")

    # The benchmark's plain EASE row on the tuning seed is that same run: copied, not trained again.
    store = RecordStore(tmp_path / "results.json")
    lines = []
    run_rows(["EASE"], "ml-100k", str(protocol), [2020], store, log_dir=tmp_path / "logs",
             tuning_store=RecordStore(out / "ml-100k.json"), progress=lines.append)
    (record,) = store.read()
    assert record["label"] == "EASE" and record["reused_from"]["label"] == best["label"]
    assert record["test"] == best["test"] and record["command"].endswith("--seed=2020")
    assert "EASE.yaml" in record["command"] and "copied" in lines[-1]
    tuned.write_text("reg_weight: 3.0\n")  # values no tuning run had: nothing to reuse
    assert benchmarks.harness.tuning_twin(RecordStore(out / "ml-100k.json"), "EASE", "ml-100k", str(protocol), 2020) is None


def test_table_puts_each_models_plain_row_before_its_variants():
    table = markdown_table([record("A[x=1]", 1, 0.1), record("B", 1, 0.2), record("A", 1, 0.3), record("B[y=2]", 1, 0.4)])
    assert [line.split(" | ")[0][2:] for line in table.splitlines()[2:]] == ["A", "A[x=1]", "B", "B[y=2]"]


@pytest.mark.slow
def test_killed_multi_stage_run_resumes_from_its_checkpoints(tmp_path, tiny_llm_path):
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    tiny = [f"--llm_path={tiny_llm_path}", "--llm_num_layers=~", f"--llm_cache_dir={tmp_path / 'cache'}",
            "--graph_epochs=1", "--item_alignment_epochs=1", "--item_alignment_batch_size=32",
            "--user_alignment_batch_size=64", "--max_history=10"]
    spec = {"label": "GLTA", "model": "GLTA", "dataset": "ml-100k", "seed": 1, "config_files": [str(protocol)],
            "data_path": None, "command": "c", "harness_command": "h",
            "checkpoint_dir": str(checkpoint_dir_of(tmp_path / "r.json", "GLTA", 1))}
    # The run's process ends after its first stage-3 epoch, before the parent removes the folder (a kill)...
    first = run_child({**spec, "overrides": tiny + ["--user_alignment_epochs=1"]})
    assert not first["resumed"] and set(first["stage_s_per_epoch"]) == {"graph", "holdout_graph", "item_alignment",
                                                                          "user_alignment"}
    # ... and the next run of the same (row, seed) trains only what is left: the second stage-3 epoch.
    second = run_child({**spec, "overrides": tiny + ["--user_alignment_epochs=2"]})
    assert second["resumed"] and set(second["stage_s_per_epoch"]) == {"user_alignment"}
    assert second["epochs_trained"] == 1


def test_distinct_rows_get_distinct_file_names():
    # HCCF+ and HCCF once shared a log file (and would have shared a checkpoint folder).
    rows = ["HCCF", "HCCF+", "HCCF[learning_rate=0.005]", "HCCF+[learning_rate=0.005]", "LightGCN+", "LightGCN_"]
    names = [safe_name(row) for row in rows]
    assert len(set(names)) == len(rows), names
    assert all(re.fullmatch(r"[A-Za-z0-9_.=-]+", name) for name in names)
    assert safe_name("GLTA") == "GLTA"


@pytest.mark.parametrize("store", ["amazon-beauty", "ml-100k", "ml-1m", "yelp", "lightgcn-ml-1m-2threads"])
def test_each_committed_rows_command_runs_what_its_label_says(store):
    # A label is a list of overrides on today's defaults: when defaults change, benchmarks/relabel.py
    # rewrites old labels, and the runner command beside each figure must follow them.
    for record in RecordStore(ROOT / "results" / f"{store}.json").read():
        assert set(parse_row(record["label"])[1]) <= set(shlex.split(record["command"])), record["label"]


def test_relabel_makes_old_defaults_explicit_once(tmp_path):
    from benchmarks.relabel import main as relabel

    old = {**record("GALRec[epochs=20]", 1, 0.1), "finished_at": "2026-11-01T00:00:00",
           "model": "GALRec", "command": "python run_recbole_llm.py --model=GALRec --epochs=20"}
    l0 = {**record("GALRec[epochs=20,use_l1=False]", 1, 0.2), "finished_at": "2026-11-01T00:00:00",
          "model": "GALRec", "command": "python run_recbole_llm.py --model=GALRec --epochs=20 --use_l1=False"}
    new = {**record("GALRec[epochs=20]", 2, 0.3), "finished_at": "2026-12-01T00:00:00",
           "model": "GALRec", "command": "python run_recbole_llm.py --model=GALRec --epochs=20"}
    store = RecordStore(tmp_path / "r.json")
    for r in (old, l0, new):
        store.add(r)
    argv = [str(store.path), "--model", "GALRec", "--before", "2026-11-15", "--was", "use_l1=True", "--now", "use_l1=False"]
    for _ in range(2):  # a second pass changes nothing
        relabel(argv)
        rows = [(r["label"], r["seed"], {a for a in r["command"].split() if a.startswith("--use")}) for r in store.read()]
        assert rows == [("GALRec[epochs=20,use_l1=True]", 1, {"--use_l1=True"}),
                        ("GALRec[epochs=20]", 1, {"--use_l1=False"}), ("GALRec[epochs=20]", 2, set())]


def test_relabel_keeps_a_row_and_its_id_control_paired(tmp_path):
    from benchmarks.relabel import main as relabel

    common = {"finished_at": "2026-11-01T00:00:00", "model": "GALRec"}
    row = {**record("GALRec[epochs=18]", 1, 0.3), **common, "control": "GALRec[epochs=18,id_control=True]",
           "command": "python run_recbole_llm.py --model=GALRec --epochs=18 --graph_loss=softmax"}
    control = {**record("GALRec[epochs=18,id_control=True]", 1, 0.2), **common, "control": None,
               "command": "python run_recbole_llm.py --model=GALRec --epochs=18 --id_control=True"}
    store = RecordStore(tmp_path / "r.json")
    for r in (row, control):
        store.add(r)
    relabel([str(store.path), "--model", "GALRec", "--before", "2026-11-15", "--was", "graph_loss=bpr,epochs=20",
             "--now", "graph_loss=softmax,epochs=18"])
    new_row, new_control = store.read()
    assert new_row["label"] == "GALRec" and new_control["label"] == "GALRec[graph_loss=bpr,id_control=True]"
    # The row ran the softmax itself; its control ran on the old default, and is no longer the row's control.
    assert new_row["control"] == "GALRec[id_control=True]" and new_control["control"] is None


def test_relabel_leaves_the_protocols_keys_to_the_protocol(tmp_path):
    """The benchmark protocol sets epochs and eval_step over the model file: a new default there changes
    nothing a plain label runs, and a budget an earlier pass dropped from a label comes back."""
    from benchmarks.relabel import main as relabel

    protocol = "recbole_llm/properties/benchmark/amazon-beauty.yaml"
    common = {"finished_at": "2026-11-01T00:00:00", "model": "GALRec", "config_files": [protocol]}
    budget = {**record("GALRec[epochs=18,eval_step=3]", 1, 0.3), **common,
              "command": "python run_recbole_llm.py --model=GALRec --epochs=18 --eval_step=3"}
    dropped = {**record("GALRec", 2, 0.3), **common,  # relabelled before the protocol was read
               "command": "python run_recbole_llm.py --model=GALRec --epochs=18 --eval_step=3"}
    store = RecordStore(tmp_path / "r.json")
    for r in (budget, dropped):
        store.add(r)
    for _ in range(2):
        relabel([str(store.path), "--model", "GALRec", "--before", "2026-11-15", "--was", "epochs=20,eval_step=1",
                 "--now", "epochs=18,eval_step=3"])
        assert [r["label"] for r in store.read()] == ["GALRec[epochs=18,eval_step=3]"] * 2


def test_a_file_that_is_not_a_store_is_refused_before_anything_is_rewritten(tmp_path, capsys):
    from benchmarks.relabel import main as relabel
    from benchmarks.run import main as run

    store = RecordStore(tmp_path / "d.json")
    store.add({**record("GALRec", 1, 0.1), "finished_at": "2026-11-01T00:00:00", "model": "GALRec",
               "command": "python run_recbole_llm.py --model=GALRec"})
    before = store.path.read_text()
    (tmp_path / "gpu_paper_shape.json").write_text(json.dumps({"step_seconds": 1.0}))
    (tmp_path / "broken.json").write_text("[{")
    for other in ("gpu_paper_shape.json", "broken.json"):
        with pytest.raises(SystemExit):
            relabel([str(store.path), str(tmp_path / other), "--model", "GALRec", "--before", "2026-11-15",
                     "--was", "use_l1=True"])
        assert f"error: {tmp_path / other} is not a store of benchmark records" in capsys.readouterr().err
    assert store.path.read_text() == before
    with pytest.raises(SystemExit):
        run(["--dataset", "d", "--name", "gpu_paper_shape", "--protocol", "p.yaml", "--out", str(tmp_path), "--report-only"])
    assert "is not a store of benchmark records" in capsys.readouterr().err


def test_readme_overview_table_is_the_one_the_results_render():
    from benchmarks.report import ROOT, overview_table, readme_with_overview

    readme = (ROOT / "README.md").read_text()
    assert readme_with_overview(readme, overview_table()) == readme, "run: python benchmarks/report.py --readme"


def test_overview_takes_plain_rows_else_the_variant_best_on_validation(tmp_path):
    from benchmarks.report import overview_table

    def rec(label, model, valid, test):
        return {"label": label, "model": model, "dataset": "d", "valid": {"ndcg@10": valid}, "test": {"ndcg@10": test}}

    (tmp_path / "d.json").write_text(json.dumps([
        rec("BPR", "BPR", 0.1, 0.11), rec("BPR", "BPR", 0.1, 0.13), rec("BPR[lr=1]", "BPR", 0.9, 0.9),
        rec("GLTA[a=1]", "GLTA", 0.2, 0.25), rec("GLTA[a=2]", "GLTA", 0.3, 0.15),
    ]))
    assert overview_table(tmp_path).splitlines()[2:] == ["| GLTA | 0.1500 † |", "| BPR | 0.1200 ± 0.0141 |"]

    # A variant run on more seeds is judged on the seed the others ran too, not on its mean.
    (tmp_path / "d.json").write_text(json.dumps([
        {**rec("GLTA[a=1]", "GLTA", 0.30, 0.25), "seed": 1}, {**rec("GLTA[a=1]", "GLTA", 0.10, 0.21), "seed": 2},
        {**rec("GLTA[a=2]", "GLTA", 0.25, 0.15), "seed": 1},
    ]))
    assert overview_table(tmp_path).splitlines()[2:] == ["| GLTA | 0.2300 ± 0.0283 † |"]

    # A row that read the validation items at test (fold_in_valid) shows its figures without them.
    (tmp_path / "d.json").write_text(json.dumps([
        {**rec("GLTA[a=1,fold_in_valid=True]", "GLTA", 0.3, 0.40), "test_unfolded": {"ndcg@10": 0.31}},
        rec("GLTA[a=2]", "GLTA", 0.2, 0.35),
    ]))
    assert overview_table(tmp_path).splitlines()[2:] == ["| GLTA | 0.3100 † |"]


def test_alternate_runs_the_ways_in_turn_and_drops_the_warm_up_round():
    import torch

    from benchmarks.harness import alternate

    param, calls = torch.nn.Parameter(torch.ones(1)), []

    def way(name):
        def step():
            assert param.grad is None  # every step starts from cleared gradients
            calls.append(name)
            (param * 2).sum().backward()
        return step

    seconds = alternate({"a": way("a"), "b": way("b")}, 3, [param], torch.device("cpu"))
    assert calls == ["a", "b"] * 4
    assert {name: len(values) for name, values in seconds.items()} == {"a": 3, "b": 3}
    assert all(value >= 0 for values in seconds.values() for value in values)
