"""Benchmark harness: train and test rows of models under one protocol, record scores and costs.

A *row* is a model name with optional config overrides, written ``Model`` or
``Model[key=value,key=value]`` (an ablation, a tuned variant); its label is that string. Each
(row, seed) runs in a fresh Python process through ``recbole_llm.quick_start.run_recbole_llm``,
so its peak resident memory is its own and a crash cannot take the harness down. Records go to
``results/<dataset>.json`` (or another store), rewritten atomically after every run, so a killed
harness loses at most the run in flight and a rerun skips every finished (row, seed). A run keeps
its checkpoints in a fixed folder beside the store until its record is written, so a killed run
resumes from its last completed stage or epoch on the rerun (marked ``resumed``; models on
RecBole's epoch loop through ``recbole_llm.trainer.resume``, GLTA and GAL-Rec through their own).
GLTA and GAL-Rec rows of one store share a stage-1 cache (``graph_cache_dir``) beside it, so rows
that differ only in later-stage keys train stage 1 once per seed (marked ``graph_source: cache``).

Per-dataset tuned hyper-parameters live in ``recbole_llm/properties/benchmark/<dataset>/<Model>.yaml`` and are
added to every run of that model on that dataset (see ``tune.py``, which writes them).
"""

import fcntl
import hashlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the child process runs this file as a script, from any install

from recbole_llm.helpers import atomic_write, property_keys  # noqa: E402
from recbole_llm.utils import MODEL_ALIASES  # noqa: E402
TUNED_DIR = ROOT / "recbole_llm" / "properties" / "benchmark"
_ROW = re.compile(r"^(?P<model>[^\[\]]+?)(?:\[(?P<overrides>.*)\])?$")


def synchronize(device):
    """Wait for the work queued on ``device`` (a GPU runs asynchronously), so that a host clock read next times it."""
    if device.type == "cuda":
        import torch  # only the timing scripts need it; the harness itself runs models in child processes

        torch.cuda.synchronize(device)


def timing_model(model_class, dataset, data_path, overrides):
    """``(config, model)``: ``model_class`` built as a run builds it (config with ``--key=value`` ``overrides``,
    dataset, split, seed), on its device, for the scripts that time its steps."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_llm.config import Config

    config = Config(model_class.__name__, dataset, config_dict={"data_path": data_path} if data_path else {},
                    cmd_args=overrides)
    init_seed(config["seed"], True)
    train, _, _ = data_preparation(config, create_dataset(config))
    return config, model_class(config, train._dataset).to(config["device"])


def alternate(steps, repeats, params, device):
    """``{name: [seconds]}`` of each of ``steps`` (``{name: callable}``), run in turn ``repeats`` + 1 times.

    The first round warms up allocators and caches and is not kept; each step starts with the
    gradients of ``params`` cleared, and the clock waits for ``device``. Running the ways in turn,
    under the same load, is what makes their ratio a fair one on a shared machine.
    """
    import time

    seconds = {name: [] for name in steps}
    for repeat in range(repeats + 1):
        for name, step in steps.items():
            for p in params:
                p.grad = None
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            if repeat:
                seconds[name].append(time.perf_counter() - start)
    return seconds


def parse_row(label):
    """``"GLTA[use_profile=False,lr=0.01]"`` -> ``("GLTA", ["--use_profile=False", "--lr=0.01"])``."""
    match = _ROW.match(label.strip())
    if not match:
        raise ValueError(f"Row {label!r} is not of the form Model or Model[key=value,...]")
    overrides = [item.strip() for item in (match["overrides"] or "").split(",") if item.strip()]
    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise ValueError(f"Row {label!r}: overrides {bad} are not key=value")
    return match["model"].strip(), [f"--{item}" for item in overrides]


def row_values(label):
    """``"M[lr=0.01,reg=1e-5]"`` -> ``{"lr": "0.01", "reg": "1e-5"}``: a row's overrides as written."""
    return dict(item[2:].split("=", 1) for item in parse_row(label)[1])


def row_label(model, values):
    """``("M", {"lr": "0.01"})`` -> ``"M[lr=0.01]"``, and ``"M"`` without values: ``row_values``' inverse."""
    return model + (f"[{','.join(f'{k}={v}' for k, v in values.items())}]" if values else "")


def control_label(model, label):
    """The label of a row's id control: the same row with text removed everywhere (``id_control``, a key of
    the models that have one, GLTA's and GAL-Rec's): ``GLTA`` -> ``GLTA[id_control=True]``. None for a
    model without one, and for a row that is a control itself."""
    if "id_control" not in property_keys(MODEL_ALIASES.get(model, model)):
        return None
    values = row_values(label)
    if values.get("id_control") == "True":
        return None
    return row_label(parse_row(label)[0], {**values, "id_control": "True"})


def run_config_files(protocol, dataset, model, extra=()):
    """The protocol file, then ``extra`` (files every row of the run reads, e.g. a dataset's richer item
    text: ``run.py --config_files``), then the model's tuned file for this dataset if there is one."""
    files = [str(protocol), *map(str, extra)]
    tuned = TUNED_DIR / dataset / f"{model}.yaml"
    if tuned.is_file():
        files.append(os.path.relpath(tuned, ROOT))
    return files


def single_run_command(model, dataset, config_files, seed, overrides, data_path):
    """The runner command that reproduces one (row, seed) on its own."""
    parts = ["python", "run_recbole_llm.py", f"--model={model}", f"--dataset={dataset}",
             f"--config_files={' '.join(config_files)}", f"--seed={seed}"]
    if data_path:
        parts.append(f"--data_path={data_path}")
    return shlex.join(parts + overrides)


def environment():
    """Device and library versions, recorded beside every figure."""
    import numpy
    import peft
    import recbole
    import torch
    import transformers

    if torch.cuda.is_available():
        device = f"cuda: {torch.cuda.get_device_name(0)}"
    else:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor() or "unknown")
        device = f"cpu: {cpu}, {len(os.sched_getaffinity(0))} cores, {torch.get_num_threads()} torch threads"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    versions = {"python": platform.python_version(), "torch": torch.__version__, "recbole": recbole.__version__,
                "transformers": transformers.__version__, "peft": peft.__version__, "numpy": numpy.__version__,
                "recbole_llm_commit": commit}
    return device, versions


def safe_name(row):
    """A row label as a file name, distinct for distinct labels: ``LightGCN+[lr=0.01]`` -> ``LightGCN_lr=0.01_-1a2b3c4d``.

    Where characters had to be replaced, a digest of the label follows: ``HCCF+[lr=0.01]`` and
    ``HCCF[lr=0.01]`` once both became ``HCCF_lr=0.01_``, so the second run overwrote the first's
    log and would have shared its checkpoint folder.
    """
    name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", row)
    return name if name == row else f"{name}-{hashlib.sha1(row.encode()).hexdigest()[:8]}"


def beside_store(store_path, kind):
    """The hidden folder ``.<store name>.<kind>`` next to a store, where its runs keep what git does not
    (``.gitignore`` lists each kind)."""
    store_path = Path(store_path)
    return store_path.with_name(f".{store_path.stem}.{kind}")


def graph_cache_dir_of(store_path):
    """Where the GLTA and GAL-Rec rows of a store share their stage-1 LightGCNs (next to the store, hidden):
    rows that differ only in later-stage keys (ablations, λ, heads) train stage 1 once per seed."""
    return beside_store(store_path, "graph_cache")


def checkpoint_dir_of(store_path, row, seed):
    """Where one (row, seed) run of a store keeps its checkpoints while it runs (next to the store, hidden)."""
    return beside_store(store_path, "checkpoints") / f"{safe_name(row)}-{seed}"


def log_dir_of(store_path, dataset):
    """Where the runs of a store write their logs: ``log/benchmarks/<dataset>/`` for the project's table
    (``results/<dataset>.json``); beside any other store, hidden (``.<stem>.logs/``). A probe's or a tuning
    run's rerun of a row then neither overwrites the log of the same row in ``results/`` nor, when it
    resumes, appends to it."""
    if Path(store_path).resolve() == (ROOT / "results" / f"{dataset}.json").resolve():
        return ROOT / "log" / "benchmarks" / dataset
    return beside_store(store_path, "logs")


def per_user_path_of(store_path, row, seed):
    """Where one (row, seed) run of a store writes its per-user test figures: ``per_user/<store name>/`` beside the
    store (``<dataset>`` for ``results/<dataset>.json``), so that a table named with ``--name`` never writes over the
    files of the dataset's own table."""
    store_path = Path(store_path)
    return store_path.parent / "per_user" / store_path.stem / f"{safe_name(row)}-{seed}.csv.gz"


def floats(result):
    """A RecBole result as {metric: float}, or None."""
    return {k: float(v) for k, v in result.items()} if result else None


def run_child(spec):
    """Body of the child process: one training run; returns its record."""
    from benchmarks import per_user
    from recbole_llm.quick_start import run_recbole_llm

    # One fixed folder per (dataset, row, seed), removed once the record is written: a killed run
    # leaves its stage or epoch checkpoints there, and the next harness run of the same row resumes
    # from its last completed stage or epoch instead of starting over.
    # A spec without one (written by hand) gets a temporary folder.
    checkpoint_dir = Path(spec.get("checkpoint_dir") or tempfile.mkdtemp(prefix="bench-ckpt-"))
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    config_dict = {"seed": spec["seed"], "checkpoint_dir": str(checkpoint_dir), "show_progress": False}
    if spec.get("graph_cache_dir"):
        config_dict["graph_cache_dir"] = spec["graph_cache_dir"]
    if spec["data_path"]:
        config_dict["data_path"] = spec["data_path"]
    # Before the run: the commit is the code the run imports, even if the checkout changes while it trains.
    device, versions = environment()
    with per_user.capture() as evaluations:
        result = run_recbole_llm(spec["model"], spec["dataset"], config_file_list=spec["config_files"],
                                 config_dict=config_dict, cmd_args=spec["overrides"], saved=True)
    per_user_file = graph_per_user_file = None
    if spec.get("per_user_path"):
        users, values = per_user.per_user_table(evaluations, result["test_result"])
        per_user.write_csv_gz(spec["per_user_path"], users, values)
        per_user_file = os.path.relpath(spec["per_user_path"], ROOT)
        if result.get("graph_test_result"):
            stage1_path = spec["per_user_path"].replace(".csv.gz", "-stage1.csv.gz")
            per_user.write_csv_gz(stage1_path, *per_user.per_user_table(evaluations, result["graph_test_result"], last=True))
            graph_per_user_file = os.path.relpath(stage1_path, ROOT)
    train = result["train_seconds_per_epoch"]
    stages = result["stage_seconds_per_epoch"]
    return {
        "label": spec["label"],
        "model": spec["model"],
        "dataset": spec["dataset"],
        "seed": spec["seed"],
        "test": {k: float(v) for k, v in result["test_result"].items()},
        "valid": {k: float(v) for k, v in (result["best_valid_result"] or {}).items()},
        "best_epoch": result["best_epoch"],
        "epochs_trained": len(train),
        "train_s_per_epoch": median(train) if train else 0.0,
        # A multi-stage model's training is all of its stages, not only the epochs of RecBole's fit.
        "train_s_total": sum(sum(v) for v in stages.values()) if stages else sum(train),
        "stage_s_per_epoch": {k: median(v) for k, v in stages.items() if v} if stages else None,  # skipped stages have none
        "valid_s_per_epoch": median(result["valid_seconds_per_epoch"]) if result["valid_seconds_per_epoch"] else 0.0,
        "eval_s": result["test_seconds"],
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": result.get("peak_gpu_mb"),
        "params_total": result["params_total"],
        "params_trainable": result["params_trainable"],
        "device": device,
        "versions": versions,
        "config_files": spec["config_files"],
        "command": spec["command"],
        "harness_command": spec["harness_command"],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # A resumed run's seconds and peak memory cover only the stages and epochs it trained itself.
        "resumed": result["resumed"],
        # GLTA's and GAL-Rec's stage 1: "cache" when an earlier row with the same graph settings and
        # seed trained it (its seconds are then that row's, not this one's).
        "graph_source": result.get("graph_source"),
        # GLTA's and GAL-Rec's own stage-1 LightGCN on the same test split, and the learned fusion weights.
        "graph_test": floats(result.get("graph_test_result")),
        "fusion": result.get("fusion"),
        # fold_in_valid (GLTA, GAL-Rec): the test scored with the validation items folded in; these are the same
        # model's test and stage 1's test without them.
        "test_unfolded": floats(result.get("unfolded_test_result")),
        "graph_test_unfolded": floats(result.get("unfolded_graph_test_result")),
        # Each test user's ndcg@10, precision@10, recall@10 (benchmarks/per_user.py), for paired comparisons.
        "per_user": per_user_file,
        "graph_per_user": graph_per_user_file,  # GLTA's and GAL-Rec's stage 1 alone (graph_test), per user
        # The row's id control (GLTA's and GAL-Rec's: the same row without any text), compared with it in reports.
        "control": control_label(spec["model"], spec["label"]),
    }


class NotAStore(ValueError):
    """A file where a store of records should be holds something else (e.g. ``gpu_paper_shape.json``)."""


class RecordStore:
    """A JSON list of records, one per (label, seed), rewritten atomically after each addition.

    Several harnesses may fill one store at once (e.g. one per CPU core): each addition re-reads
    the file under an exclusive lock and merges into what is there, so no record is lost. A file
    that is not such a list is refused on reading (``NotAStore``), before anything is rewritten.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.records = self.read()

    def read(self):
        """The records on disk now, including those other harnesses added."""
        if not self.path.is_file():
            return []
        try:
            records = json.loads(self.path.read_text())
        except json.JSONDecodeError as e:
            raise NotAStore(f"{self.path} is not a store of benchmark records: it is not valid JSON ({e})")
        if not (isinstance(records, list) and all(isinstance(r, dict) and "label" in r and "seed" in r
                                                  for r in records)):
            raise NotAStore(f"{self.path} is not a store of benchmark records (a JSON list of them, as "
                            "benchmarks/run.py writes to results/<dataset>.json)")
        return records

    def has(self, label, seed):
        return any(r["label"] == label and r["seed"] == seed for r in self.read() + self.records)

    def add(self, record):
        self.rewrite(lambda records: [r for r in records if not (r["label"] == record["label"]
                                                                 and r["seed"] == record["seed"])] + [record])

    def rewrite(self, change):
        """Replace the records on disk by ``change(records)``, under the lock the other harnesses take."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(f".{self.path.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.records = change(self.read())
            atomic_write(self.path, lambda f: json.dump(self.records, f, indent=1), mode="w")


def tuning_twin(tuning_store, model, dataset, protocol, seed):
    """The tuning run that *is* the tuned ``model`` on ``seed``, or None.

    ``tune.py`` trains every grid point on the protocol with seed 2020 and writes the best point's
    values to ``recbole_llm/properties/benchmark/<dataset>/<Model>.yaml``. The benchmark's plain ``Model`` row
    with that seed is then the same run (same protocol, same values, same seed, deterministic), so
    it is taken from the tuning store instead of being trained a second time.
    """
    tuned_file = TUNED_DIR / dataset / f"{model}.yaml"
    if tuning_store is None or not tuned_file.is_file():
        return None
    tuned = yaml.safe_load(tuned_file.read_text()) or {}
    for record in tuning_store.read():
        if record["model"] != model or record["seed"] != seed or record["dataset"] != dataset:
            continue
        if record["config_files"] != [str(protocol)]:
            continue
        if {k: yaml.safe_load(v) for k, v in row_values(record["label"]).items()} == tuned:
            return record
    return None


def run_to_end(argv, log):
    """Run one row's process with its output in ``log``; returns its exit status.

    If this process is stopped meanwhile (Ctrl-C, or SIGTERM once ``run.py`` turns it into an
    exit), the row's process is stopped too instead of training on unwatched; its checkpoints stay,
    so the next run of the same row resumes.
    """
    child = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        return child.wait()
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def run_rows(rows, dataset, protocol, seeds, store, data_path=None, log_dir=None, harness_command=None,
             progress=print, tuning_store=None, keep_checkpoints=False, replace=False, config_files=()):
    """Run every (row, seed) not yet in ``store``, each in its own process; returns the store.

    With ``replace``, rows already in the store run again and their new records replace the old
    ones (e.g. to add what a newer harness records, such as the per-user file).

    ``config_files``: YAML files every row reads after the protocol (``run_config_files``).

    With ``tuning_store``, a plain ``Model`` row whose tuned grid point was already trained on this
    seed (``tuning_twin``) is copied from it, marked ``reused_from``, instead of being run again.
    A finished row's checkpoints are deleted once its record is stored, unless ``keep_checkpoints``
    (to evaluate the best model again, e.g. with ``benchmarks/probes/evaluate_checkpoint.py``).
    """
    todo = [(row, seed) for row in rows for seed in seeds]
    log_dir = Path(log_dir or log_dir_of(store.path, dataset))
    log_dir.mkdir(parents=True, exist_ok=True)
    for index, (row, seed) in enumerate(todo, 1):
        tag = f"[{index}/{len(todo)}] {row} seed={seed}"
        if not replace and store.has(row, seed):
            progress(f"{tag}: done earlier, skipped")
            continue
        model, overrides = parse_row(row)
        files = run_config_files(protocol, dataset, model, config_files)
        spec = {"label": row, "model": model, "dataset": dataset, "seed": seed, "overrides": overrides,
                "config_files": files, "data_path": data_path,
                "command": single_run_command(model, dataset, files, seed, overrides, data_path),
                "harness_command": harness_command, "checkpoint_dir": str(checkpoint_dir_of(store.path, row, seed)),
                "graph_cache_dir": str(graph_cache_dir_of(store.path)),
                "per_user_path": str(per_user_path_of(store.path, row, seed))}
        twin = tuning_twin(tuning_store, model, dataset, protocol, seed) if not (overrides or config_files) else None
        if twin is not None:
            record = {**twin, "label": row, "control": control_label(model, row), "config_files": files,
                      "command": spec["command"],
                      "reused_from": {"label": twin["label"], "store": os.path.relpath(tuning_store.path, ROOT),
                                      "command": twin["command"], "harness_command": twin["harness_command"]}}
            store.add(record)
            progress(f"{tag}: the tuning run {twin['label']} (same values and seed), copied")
            continue
        log_path = log_dir / f"{safe_name(row)}-{seed}.log"
        progress(f"{tag}: running (log: {os.path.relpath(log_path)})")
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "record.json"
            spec_path.write_text(json.dumps(spec))
            # A row resuming from its checkpoint adds to the log of the runs it continues.
            resuming = Path(spec["checkpoint_dir"]).is_dir() and log_path.is_file()
            with open(log_path, "a" if resuming else "w") as log:
                if resuming:
                    log.write(f"\n--- resumed {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
                    log.flush()
                returncode = run_to_end([sys.executable, __file__, str(spec_path), str(result_path)], log)
            if returncode != 0:
                raise RuntimeError(f"{tag} failed (exit {returncode}); see {log_path}")
            record = json.loads(result_path.read_text())
        store.add(record)
        if not keep_checkpoints:
            shutil.rmtree(spec["checkpoint_dir"], ignore_errors=True)
        key = next((k for k in ("ndcg@10", "hit@10") if k in record["test"]), next(iter(record["test"])))
        progress(f"{tag}: {key}={record['test'][key]:.4f}, best epoch {record['best_epoch']}, "
                 f"{record['train_s_per_epoch']:.2f} s/epoch, {time.perf_counter() - start:.0f} s")
    return store


if __name__ == "__main__":
    # Child process: python benchmarks/harness.py SPEC.json RECORD.json
    child_spec = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps(run_child(child_spec)))
