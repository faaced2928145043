"""The README's "Your own dataset" example, run as written on a small generated dataset: flags alone, no property file."""

import random
import re
import shlex
from pathlib import Path

import pytest

import run_recbole_llm

README = Path(__file__).resolve().parent.parent / "README.md"
THEMES = ["A novel about a girl who grows up on a farm", "A book of poems about the sea",
          "A cookbook with simple recipes", "A fantasy adventure with dragons", "A thriller about a spy"]


def readme_commands():
    section = README.read_text().split("## Your own dataset", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return section, [shlex.split(line)[2:] for line in block.splitlines() if line.startswith("python run_recbole_llm.py")]


def write_books(root):
    """``root/books/``: 60 users, 40 books in 5 themes, each user mostly reading one theme."""
    rng = random.Random(0)
    folder = root / "books"
    folder.mkdir()
    with open(folder / "books.item", "w") as f:
        f.write("item_id:token\ttitle:token_seq\n")
        f.writelines(f"b{i}\t{THEMES[i % 5]}, volume {i}\n" for i in range(40))
    with open(folder / "books.inter", "w") as f:
        f.write("user_id:token\titem_id:token\n")
        for user in range(60):
            books = set(rng.sample(range(user % 5, 40, 5), 5) + rng.sample(range(40), 6))
            f.writelines(f"u{user}\tb{book}\n" for book in sorted(books))


@pytest.fixture
def books(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole's log/ and saved/ go here
    write_books(tmp_path)
    return tmp_path


def test_readme_example_runs_on_flags_alone(books, tiny_llm_path, capsys):
    section, commands = readme_commands()
    assert "user_id:token   item_id:token     item_id:token   title:token_seq" in section  # the files written here
    assert [argv[0].split("=")[0] for argv in commands] == ["--model", "--model", "--recommend"]
    quick = ["--epochs=2", "--show_progress=False", "--state=WARNING", f"--llm_path={tiny_llm_path}",
             "--llm_num_layers=~", f"--llm_cache_dir={books / 'cache'}"]
    for argv in commands[:2]:
        argv = [arg.replace("/data", str(books)) for arg in argv]
        assert run_recbole_llm.main(argv + quick) == 0, argv
    saved = max((books / "saved").glob("LightGCNPlus-*.pth"), key=lambda p: p.stat().st_mtime)
    recommend = [arg.replace("saved/<file>.pth", str(saved)) for arg in commands[2]]
    assert run_recbole_llm.main(recommend) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "user u0:" and len(printed) == 2 * 6 and "title: " in printed[1]


def test_text_model_on_missing_text_column_lists_the_files_columns(books, capsys):
    argv = ["--model=LightGCNPlus", f"--data_path={books}", "--dataset=books", "--item_text_fields=[name]"]
    assert run_recbole_llm.main(argv) == 2
    err = capsys.readouterr().err
    assert "['name']" in err and "['item_id', 'title']" in err and "Fix:" in err


def test_list_flags_reach_the_config_as_lists(books):
    from recbole_llm.config import Config

    config = Config("BPR", "books", cmd_args=[f"--data_path={books}", "--item_text_fields=[title, author]",
                                              "--load_col={inter: [user_id, item_id]}"])
    assert config["item_text_fields"] == ["title", "author"]
    assert config["load_col"] == {"inter": ["user_id", "item_id"]}


@pytest.mark.slow
def test_readme_example_recommends_from_the_stock_model_too(books, capsys):
    # The first command trains BPR, which names no item_text_fields: --recommend then shows every .item column.
    _, commands = readme_commands()
    argv = [arg.replace("/data", str(books)) for arg in commands[0]]
    assert run_recbole_llm.main(argv + ["--epochs=1", "--show_progress=False", "--state=WARNING"]) == 0
    (saved,) = (books / "saved").glob("BPR-*.pth")
    assert run_recbole_llm.main([arg.replace("saved/<file>.pth", str(saved)) for arg in commands[2]]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "user u0:" and len(printed) == 2 * 6, printed
    assert all(line.startswith("  ") and "title: " in line for line in printed[1:6]), printed
