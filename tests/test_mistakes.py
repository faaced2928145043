"""Nonsense values, unusable files and folders, damaged checkpoints: one ``error:`` line naming the
problem and the fix, exit code 2, no traceback, and nothing already written is lost."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import run_recbole_llm
from recbole_llm import helpers, quick_start
from recbole_llm.config import Config
from recbole_llm.errors import CheckpointError, UnknownKeyWarning
from recbole_llm.trainer.run_state import run_digest

ROOT = Path(__file__).resolve().parent.parent
QUIET = ["--state=WARNING", "--show_progress=False"]


def cli(capfd, *argv):
    """The runner in this process: exit code and everything it printed."""
    code = run_recbole_llm.main(list(argv))
    out, err = capfd.readouterr()
    return code, out + err


def assert_refused(code, output, *names):
    assert code == 2, output
    assert [line for line in output.splitlines() if line.startswith("error:")] == [
        line for line in output.splitlines() if "error:" in line], output
    assert sum(line.startswith("error:") for line in output.splitlines()) == 1, output
    assert "Traceback" not in output and "Fix:" in output, output
    for name in names:
        assert name in output, (name, output)


@pytest.mark.slow
def test_the_real_command_refuses_a_nonsense_value_before_any_work(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "run_recbole_llm.py"), "--model=BPR", "--nproc=0",
                           "--train_batch_size=0"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert_refused(done.returncode, done.stdout + done.stderr, "nproc=0")
    assert not any(tmp_path.iterdir()), "nothing is created before the values are checked"


@pytest.mark.parametrize("argv, named", [
    (["--model=BPR", "--nproc=0"], "nproc=0"),
    (["--model=BPR", "--nproc=-2"], "nproc=-2"),
    (["--model=BPR", "--train_batch_size=0"], "train_batch_size=0"),
    (["--model=BPR", "--embedding_size=0"], "embedding_size=0"),
    (["--model=BPR", "--epochs=-1"], "epochs=-1"),
    (["--model=GLTA", "--user_alignment_epochs=0"], "user_alignment_epochs=0"),
    (["--model=BPR", "--learning_rate=abc"], "learning_rate='abc'"),
    (["--model=BPR", "--epochs="], "epochs=nothing"),
    (["--model=GAL-Rec", "--momentum=1.0"], "[0, 1)"),
    (["--model=BPR", "--topk=[10,0]"], "topk"),
    (["--model=HCCF", "--ssl_reg=abc"], "ssl_reg='abc'"),
    (["--model=LightGCN."], "Unknown model 'LightGCN.'"),
])
def test_bad_values(capfd, tmp_path, monkeypatch, argv, named):
    monkeypatch.chdir(tmp_path)
    assert_refused(*cli(capfd, *argv, "--dataset=ml-100k", *QUIET), named)
    assert not any(tmp_path.iterdir())


def test_an_unknown_key_is_a_warning_with_the_closest_known_keys():
    with pytest.warns(UnknownKeyWarning, match="learing_rate .* Did you mean learning_rate"):
        Config("BPR", "ml-100k", cmd_args=["--learing_rate=0.1"])
    with pytest.warns(UnknownKeyWarning, match="foo"):
        Config("BPR", "ml-100k", config_dict={"foo": 1})


def test_known_keys_and_the_runners_flags_are_not_warned_about(recwarn):
    Config("GLTA", "ml-100k", config_dict={"graph_epochs": 2, "learning_rate": 0.01, "group_offset": 0},
           cmd_args=["--topk=[5, 10]", "--users=[1]", "--out=x.csv", "--recommend=True"])
    assert not [w for w in recwarn if issubclass(w.category, UnknownKeyWarning)]


@pytest.fixture
def in_the_way(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker / "saved"


@pytest.mark.parametrize("how", ["file in the way", "read-only"])
def test_a_checkpoint_dir_that_cannot_be_written_fails_before_training(capfd, tmp_path, monkeypatch, how, in_the_way):
    monkeypatch.chdir(tmp_path)
    folder = in_the_way
    if how == "read-only":
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        if os.access(folder, os.W_OK):
            pytest.skip("root writes into read-only folders")
    trained = []
    monkeypatch.setattr(quick_start, "run", _recording_run(trained))  # cli.main calls quick_start.run
    code, output = cli(capfd, "--model=BPR", "--dataset=ml-100k", f"--checkpoint_dir={folder}", *QUIET)
    assert_refused(code, output, f"checkpoint_dir={str(folder)!r}")
    assert trained == [], "no epoch ran"


def _recording_run(trained):
    from recbole.trainer import Trainer

    from recbole_llm.quick_start import run

    def recording(*args, **kwargs):
        original = Trainer._train_epoch
        Trainer._train_epoch = lambda self, *a, **k: trained.append(1) or original(self, *a, **k)
        try:
            return run(*args, **kwargs)
        finally:
            Trainer._train_epoch = original
    return recording


def test_a_full_disk_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    target = tmp_path / "latest.pth"
    helpers.atomic_write(target, lambda f: torch.save({"epoch": 1}, f))
    before = target.read_bytes()

    def full_disk(f):
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CheckpointError, match=f"Writing '{target}' failed: the disk is full.*Fix:"):
        helpers.atomic_write(target, full_disk)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pth"], "no partial file is left behind"


def test_a_full_disk_during_recboles_own_save_names_the_file(tmp_path, quiet_bpr):
    # RecBole's best checkpoint goes through torch.save(path); on a full disk torch says "unexpected pos".
    from recbole.trainer import Trainer
    config, trainer = quiet_bpr
    trainer.saved_model_file = str(tmp_path / "best.pth")
    trainer._save_checkpoint(0, verbose=False)
    before = Path(trainer.saved_model_file).read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    torch.save = full_disk
    try:
        with pytest.raises(CheckpointError, match="best.pth' failed"):
            Trainer._save_checkpoint(trainer, 1, verbose=False)
    finally:
        torch.save = real_save
    assert Path(trainer.saved_model_file).read_bytes() == before
    assert not list(tmp_path.glob("*.partial")), "no partial file is left behind"


@pytest.fixture
def quiet_bpr(tmp_path):
    from recbole.data import data_preparation

    from recbole_llm.utils import create_dataset, get_model, get_trainer
    config = Config("BPR", "ml-100k", config_dict={"checkpoint_dir": str(tmp_path / "saved"), "state": "WARNING"})
    train, _, _ = data_preparation(config, create_dataset(config))
    return config, get_trainer(config["MODEL_TYPE"], "BPR")(config, get_model("BPR")(config, train._dataset))


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("model, name", [("BPR", "latest.pth"), ("GLTA", "stage3_latest.pth")])
def test_a_truncated_checkpoint_is_named_with_its_fix(capfd, tmp_path, monkeypatch, tiny_llm_path, model, name):
    monkeypatch.chdir(tmp_path)
    args = {"epochs": 1, "checkpoint_dir": "saved"}
    if model == "GLTA":
        args.update(llm_path=tiny_llm_path, llm_num_layers=None, graph_epochs=1, item_alignment=False,
                    user_alignment_epochs=1)
    config = Config(model, "ml-100k", config_dict=args)
    latest = Path("saved") / f"{model}-ml-100k-{run_digest(config)}" / name
    latest.parent.mkdir(parents=True)
    torch.save({"epoch": 0, "state_dict": {}}, latest)
    truncate(latest)
    damaged = latest.read_bytes()
    argv = [f"--{k}={'~' if v is None else v}" for k, v in args.items()]
    code, output = cli(capfd, f"--model={model}", "--dataset=ml-100k", *argv, *QUIET)
    assert_refused(code, output, str(latest), "delete that file")
    assert latest.read_bytes() == damaged, "the file is reported, not replaced"


def write_dataset(root, name, users=10, items=12, header="user_id:token\titem_id:token\trating:float", texts=None):
    folder = root / name
    folder.mkdir(parents=True)
    rows = [f"{u}\t{i}\t4" for u in range(1, users + 1) for i in range(1, items + 1) if (u + i) % 3]
    (folder / f"{name}.inter").write_text("\n".join([header, *rows]) + "\n")
    if texts is not None:
        lines = ["item_id:token\ttitle:token_seq", *(f"{i}\t{texts}" for i in range(1, items + 1))]
        (folder / f"{name}.item").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("case, named", [
    ("inter header without types", "without a RecBole type"),
    ("one user", "has 1 user(s)"),
    ("YAML syntax error", "bad.yaml' is not valid YAML at line 2"),
    ("missing config file", "nope.yaml' cannot be read"),
    ("all item texts empty", "All 12 items have an empty text"),
])
def test_bad_files(capfd, tmp_path, monkeypatch, tiny_llm_path, case, named):
    monkeypatch.chdir(tmp_path)
    argv = ["--model=BPR", "--dataset=tiny", "--data_path=data", f"--checkpoint_dir={tmp_path / 'saved'}", *QUIET]
    if case == "inter header without types":
        write_dataset(tmp_path / "data", "tiny", header="user_id\titem_id\trating")
    elif case == "one user":
        write_dataset(tmp_path / "data", "tiny", users=1)
    elif case == "YAML syntax error":
        write_dataset(tmp_path / "data", "tiny")
        (tmp_path / "bad.yaml").write_text("epochs: [1\nlearning_rate: 2\n")
        argv.append("--config_files=bad.yaml")
    elif case == "missing config file":
        argv.append("--config_files=nope.yaml")
    else:
        write_dataset(tmp_path / "data", "tiny", texts="")
        argv += ["--model=GLTA", f"--llm_path={tiny_llm_path}", "--item_text_fields=['title']", "--graph_epochs=1", "--llm_num_layers=~"]
    written = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert_refused(*cli(capfd, *argv), named)
    assert all(p.read_bytes() == content for p, content in written.items()), "the user's files are untouched"
    assert not (tmp_path / "saved").exists() or not any((tmp_path / "saved").rglob("*.pth")), "nothing was trained"


@pytest.fixture(scope="module")
def bad_backbones(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM, ViTConfig, ViTModel
    root = tmp_path_factory.mktemp("backbones")
    LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(root / "no-tokenizer")
    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=16)).save_pretrained(root / "vit")
    return root


@pytest.mark.parametrize("folder, named", [
    ("no-tokenizer", "has no tokenizer files"),
    ("vit", "holds a vit model: it has no token embeddings"),
    ("does-not-exist", "nothing exists at that path"),
])
def test_bad_backbones(capfd, tmp_path, monkeypatch, bad_backbones, folder, named):
    monkeypatch.chdir(tmp_path)
    code, output = cli(capfd, "--model=GLTA", "--dataset=ml-100k", f"--llm_path={bad_backbones / folder}",
                       "--llm_num_layers=~", f"--checkpoint_dir={tmp_path / 'saved'}", *QUIET)
    assert_refused(code, output, named)
    assert "huggingface-cli" not in output, "a local folder is not downloaded"


TAB = "\t"


def write_rows(root, name, lines):
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / f"{name}.inter").write_text("\n".join(lines) + "\n")


def rows(users=10, items=12, sep=TAB):
    return [sep.join([str(u), str(i), "4"]) for u in range(1, users + 1) for i in range(1, items + 1) if (u + i) % 3]


HEADER = TAB.join(["user_id:token", "item_id:token", "rating:float"])
WITH_RATING = '--load_col={inter: [user_id, item_id, rating]}'


@pytest.mark.parametrize("case, lines, extra, named", [
    ("header repeated as a row", [HEADER, *rows()[:40], HEADER, *rows()[40:]], [], "Line 42 of"),
    ("a row with extra columns", [HEADER, *rows()[:5], "1\t2\t4\t9", *rows()[5:]], [], "Line 7 of"),
    ("space-separated", [HEADER.replace(TAB, " "), *rows(sep=" ")], [], "separates its columns with spaces"),
    ("word in a loaded float column", [HEADER, *rows()[:3], "1\t5\tfour", *rows()[3:]], [WITH_RATING],
     "holds 'four' in the float column rating"),
    ("header only", [HEADER], [], "has a header but no interactions"),
    ("duplicated column", ["user_id:token\titem_id:token\titem_id:token", *rows()], [], "names the column item_id more"),
    ("id columns named otherwise", [HEADER.replace("user_id", "user").replace("item_id", "item"), *rows()], [],
     "has no column 'user_id', which USER_ID_FIELD"),
    ("Windows line ends", [HEADER + "\r", *(r + "\r" for r in rows())], [], "Windows line ends"),
    ("field over the csv limit", [HEADER + "\tnote:token", *(r + "\t" + "x" * 140_000 for r in rows()[:3]),
                                  *rows()[3:]], ["--load_col={inter: [user_id, item_id, note]}"], "in column note:token"),
    ("one interaction per user", [HEADER, *(f"{u}\t{u}\t4" for u in range(1, 30))], [],
     "leaves no interaction for validation or test"),
])
def test_bad_atomic_files_are_refused_before_training(capfd, tmp_path, monkeypatch, case, lines, extra, named):
    monkeypatch.chdir(tmp_path)
    write_rows(tmp_path / "data", "tiny", lines)
    trained = []
    monkeypatch.setattr(quick_start, "run", _recording_run(trained))
    code, output = cli(capfd, "--model=BPR", "--dataset=tiny", "--data_path=data", "--checkpoint_dir=saved", *extra, *QUIET)
    assert_refused(code, output, named, "tiny.inter" if case != "one interaction per user" else "'tiny'")
    assert trained == [], "no epoch ran"


def test_a_byte_that_is_not_utf8_is_named_by_its_line(capfd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = "\n".join([HEADER, *rows()]).encode() + b"\n3\t\xff\xfe\t4\n"
    (tmp_path / "data" / "tiny").mkdir(parents=True)
    (tmp_path / "data" / "tiny" / "tiny.inter").write_bytes(data)
    code, output = cli(capfd, "--model=BPR", "--dataset=tiny", "--data_path=data", *QUIET)
    assert_refused(code, output, f"Line {len(rows()) + 2} of", "is not utf-8 text", "--encoding")


def test_ml_100k_with_a_data_path_reads_that_folder(capfd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, output = cli(capfd, "--model=BPR", "--dataset=ml-100k", "--data_path=/no/such/dir", *QUIET)
    assert_refused(code, output, "/no/such/dir/ml-100k/ml-100k.inter", "drop --data_path")
    write_rows(tmp_path / "data", "ml-100k", [HEADER + "\ttimestamp:float", *(r + "\t1" for r in rows())])
    config = Config("BPR", "ml-100k", config_dict={"data_path": str(tmp_path / "data")})
    assert Path(config["data_path"]) == tmp_path / "data" / "ml-100k"


@pytest.mark.parametrize("argv, named", [
    (["--valid_metric=NDCG@20"], "valid_metric='NDCG@20' is not among the metrics the evaluation computes"),
    (["--metrics=[Recall, NDCGG]"], "'NDCGG', which is not a RecBole metric. Did you mean ndcg"),
    (["--metrics=[AUC, NDCG]"], "mixes ranking metrics with value metrics"),
    (["--eval_args=abc"], "it must be a mapping"),
    (["--eval_args={split: {RS: [0.8, 0.1]}}"], "split RS must be three ratios"),
    (["--eval_args={order: XX}"], "order must be RO"),
    (["--eval_args={mode: uniform}"], "mode must be full"),
    (["--model=bpr"], "Unknown model 'bpr'. Did you mean BPR?"),
    (["--model=glta"], "Did you mean GLTA"),
])
def test_bad_evaluation_settings_and_model_names(capfd, tmp_path, monkeypatch, argv, named):
    monkeypatch.chdir(tmp_path)
    model = [] if any(a.startswith("--model") for a in argv) else ["--model=BPR"]
    assert_refused(*cli(capfd, *model, "--dataset=ml-100k", *argv, *QUIET), named)
    assert not any(tmp_path.iterdir())


def test_a_property_file_that_is_a_yaml_list_is_refused(capfd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "list.yaml").write_text("- epochs: 1\n- learning_rate: 0.1\n")
    assert_refused(*cli(capfd, "--model=BPR", "--dataset=ml-100k", "--config_files=list.yaml", *QUIET),
                   "list.yaml' holds a YAML list")


@pytest.mark.slow
def test_zero_epochs_warns_that_the_model_is_untrained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_rows(tmp_path / "data", "tiny", [HEADER, *rows()])
    with pytest.warns(UserWarning, match="epochs=0: BPR's training loop runs no epoch"):
        quick_start.run_recbole_llm("BPR", "tiny", config_dict={"epochs": 0, "data_path": "data", "state": "WARNING",
                                                                "show_progress": False})


def test_an_out_file_under_a_file_is_refused_before_loading(capfd, tmp_path, in_the_way):
    code, output = cli(capfd, f"--recommend={tmp_path / 'none.pth'}", "--users=1", f"--out={in_the_way}/recs.csv")
    assert_refused(code, output, "is a file, not a folder")
    assert "free space" not in output and "checkpoint_dir" not in output


def test_a_write_under_a_file_says_so(in_the_way):
    with pytest.raises(CheckpointError, match="is a file, not a folder") as refused:
        helpers.atomic_write(in_the_way / "recs.csv", lambda f: f.write(b"x"))
    assert "free space" not in str(refused.value)


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB file system (tmpfs), where mounting one is allowed."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_really_full_disk_says_no_space(full_disk):
    previous = full_disk / "best.pth"
    helpers.atomic_save({"weights": torch.zeros(1000)}, previous)
    before = previous.read_bytes()
    big = {"weights": torch.zeros(200_000)}
    # torch.save into a path (as RecBole writes) reports only "unexpected pos"; into a file object, the OSError.
    for write in (lambda f: torch.save(big, f.name), lambda f: torch.save(big, f)):
        with pytest.raises(CheckpointError, match="best.pth' failed: the disk is full") as refused:
            helpers.atomic_write(previous, write)
        assert "unexpected pos" not in str(refused.value)
        assert previous.read_bytes() == before and [p.name for p in full_disk.iterdir()] == ["best.pth"]


def test_a_cache_folder_that_is_a_file_is_refused_before_the_backbone(capfd, tmp_path, monkeypatch, tiny_llm_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cache").write_text("a file")
    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    code, output = cli(capfd, "--model=LightGCNPlus", "--dataset=ml-100k", f"--llm_path={tiny_llm_path}",
                       "--llm_num_layers=~", "--checkpoint_dir=saved", *QUIET)
    assert_refused(code, output, "$RECBOLE_LLM_CACHE", "is a file, not a folder", "--llm_cache_dir")


def test_a_busy_port_is_refused_before_any_process_starts(capfd, tmp_path, monkeypatch):
    import socket
    monkeypatch.chdir(tmp_path)
    with socket.socket() as listener:
        listener.bind(("", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code, output = cli(capfd, "--model=BPR", "--dataset=ml-100k", "--nproc=2", f"--port={port}", *QUIET)
    assert_refused(code, output, f"--port={port} cannot be used")
    assert_refused(*cli(capfd, "--model=BPR", "--nproc=2", "--port=http"), "--port=http is not a port number")


def test_an_unreachable_hub_is_reported_at_once(monkeypatch):
    import socket
    import time

    from recbole_llm.errors import LLMLoadError
    from recbole_llm.llm import backbone

    def no_network(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(backbone.hub_constants, "HF_HUB_OFFLINE", False)
    start = time.perf_counter()
    with pytest.raises(LLMLoadError, match="hub .* cannot be reached from this machine"):
        backbone.load_backbone({"llm_path": "someone/no-such-model-here"})
    assert time.perf_counter() - start < 2, "no retries"
    monkeypatch.setattr(backbone.hub_constants, "HF_HUB_OFFLINE", True)  # offline mode: transformers says it
    assert backbone.resolve_llm_path("someone/no-such-model-here") == "someone/no-such-model-here"


def test_an_item_text_over_the_csv_field_limit_is_read(tmp_path):
    from types import SimpleNamespace

    from recbole_llm.data.item_text import item_descriptions
    folder = tmp_path / "tiny"
    folder.mkdir()
    long_title = "word " * 40_000  # 200 KB, over csv's 128 KB field limit
    (folder / "tiny.item").write_text(f"item_id:token\ttitle:token_seq\n1\t{long_title}\n2\tshort\n")
    config = {"data_path": str(folder), "dataset": "tiny", "field_separator": "\t", "item_text_fields": ["title"],
              "item_text_template": None, "ITEM_ID_FIELD": "item_id", "model": "GLTA"}
    dataset = SimpleNamespace(config=config, iid_field="item_id", item_num=3,
                              field2token_id={"item_id": {"[PAD]": 0, "1": 1, "2": 2}})
    descriptions = item_descriptions(dataset)
    assert descriptions[1] == "title: " + long_title.strip() and descriptions[2] == "title: short"


@pytest.mark.parametrize("content, named", [
    (b"", "is empty or starts with an empty line"),
    ("\ufeff".encode() + b"user_id:token\titem_id:token\n1\t2\n", "starts with a byte-order mark"),
])
def test_an_empty_file_or_a_byte_order_mark_is_named(capfd, tmp_path, monkeypatch, content, named):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "tiny").mkdir(parents=True)
    (tmp_path / "data" / "tiny" / "tiny.inter").write_bytes(content)
    assert_refused(*cli(capfd, "--model=BPR", "--dataset=tiny", "--data_path=data", *QUIET), named, "tiny.inter")
