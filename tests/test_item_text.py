"""Item text fields become one description per internal item id."""

from pathlib import Path

import pytest
from recbole.data import create_dataset
from recbole.model.general_recommender import BPR

from recbole_llm.config import Config
from recbole_llm.data.item_text import check_item_text_fields, item_descriptions
from recbole_llm.errors import ConfigValueError, MissingTextFieldError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


class TextBPR(BPR):
    """BPR that declares it reads item text, as the plugin's LLM models do."""

    uses_item_text = True


def write_dataset(root, item_header="item_id:token\ttitle:token_seq\tcategories:token_seq"):
    folder = root / "toy"
    folder.mkdir()
    (folder / "toy.inter").write_text(
        "user_id:token\titem_id:token\n" + "".join(f"u{u}\ti{i}\n" for u in range(4) for i in range(3) if (u + i) % 2)
    )
    (folder / "toy.item").write_text(
        f"{item_header}\ni0\tRed Lipstick\tBeauty Makeup\ni1\tBlue Nail_Polish\tBeauty Nail_Care\ni2\t\tBeauty\ni9\tUnused\tNone\n"
    )
    return {"data_path": str(root), "item_text_fields": ["title", "categories"]}


def descriptions_of(config, tokens):
    """{item token: its description} for ``tokens`` of the dataset ``config`` names, read once."""
    dataset = create_dataset(config)
    descriptions = item_descriptions(dataset)
    return {token: descriptions[dataset.token2id(dataset.iid_field, token)] for token in tokens}


def test_ml100k_descriptions_align_with_internal_ids():
    dataset = create_dataset(Config("BPR", "ml-100k"))
    descriptions = item_descriptions(dataset)
    assert len(descriptions) == dataset.item_num and descriptions[0] == ""
    toy_story = dataset.token2id(dataset.iid_field, "1")
    assert descriptions[toy_story] == "Toy Story, genres: Animation Children's Comedy"
    assert all(descriptions[1:])


def test_fields_without_template_and_underscores(tmp_path):
    text = descriptions_of(Config("BPR", "toy", config_dict=write_dataset(tmp_path)), ("i0", "i1", "i2"))
    assert text == {
        "i0": "title: Red Lipstick; categories: Beauty Makeup",
        "i1": "title: Blue Nail Polish; categories: Beauty Nail Care",
        "i2": "categories: Beauty",
    }


def test_text_model_with_missing_field_fails_at_config(tmp_path):
    config_dict = write_dataset(tmp_path, item_header="item_id:token\tname:token_seq\tcategories:token_seq")
    with pytest.raises(MissingTextFieldError, match=r"\['title'\].*columns \['item_id', 'name', 'categories'\]"):
        Config(TextBPR, "toy", config_dict=config_dict)


def test_text_model_without_text_fields_is_told_which_key(tmp_path):
    config_dict = {**write_dataset(tmp_path), "item_text_fields": None}
    with pytest.raises(ConfigValueError, match="item_text_fields"):
        Config(TextBPR, "toy", config_dict=config_dict)


def test_template_naming_unknown_field(tmp_path):
    config_dict = {**write_dataset(tmp_path), "item_text_template": "{title} by {brand}"}
    with pytest.raises(ConfigValueError, match="brand"):
        Config(TextBPR, "toy", config_dict=config_dict)


@pytest.mark.parametrize("template", ["{title", "{} ({categories})", "{title:d}"])
def test_a_template_that_is_no_format_string_is_refused_with_the_fix(tmp_path, template):
    config_dict = {**write_dataset(tmp_path), "item_text_template": template}
    with pytest.raises(ConfigValueError, match=r"item_text_template .* not a usable format string.*Fix: .*'\{title\}'"):
        Config(TextBPR, "toy", config_dict=config_dict)


def test_stock_model_ignores_text_fields(tmp_path):
    config_dict = write_dataset(tmp_path, item_header="item_id:token\tname:token_seq\tcategories:token_seq")
    Config("BPR", "toy", config_dict=config_dict)  # stock models never read item text


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared benchmark datasets not beside the checkout")
@pytest.mark.parametrize("name", ["ml-1m", "amazon-beauty", "yelp"])
def test_shared_dataset_property_files_name_real_columns(name):
    check_item_text_fields(Config(TextBPR, name, config_dict={"data_path": str(SHARED)}))


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared benchmark datasets not beside the checkout")
@pytest.mark.parametrize("model", ["GALRec", "SASRec", "BPR"])
@pytest.mark.parametrize("name", ["amazon-beauty", "yelp"])
def test_sequence_datasets_default_to_leave_one_out(name, model):
    """The 5-core sequence sets are evaluated leave-one-out over each user's order by any model."""
    config = Config(model, name, config_dict={"data_path": str(SHARED)})
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert config["eval_args"]["order"] == "TO"
    assert config["valid_metric"] == "NDCG@10"
    # A config file or --eval_args still wins.
    overridden = Config(model, name, config_dict={"data_path": str(SHARED), "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}}})
    assert overridden["eval_args"]["split"] == {"RS": [0.8, 0.1, 0.1]} and overridden["eval_args"]["order"] == "RO"


def write_side_file(root, text="item,overview,cast,title\ni0,A bold red.,Ann|Bo,Other title\ni1,\"Blue, bright.\",,x\n"):
    (root / "toy" / "toy.more.csv").write_text(text)
    return {"item_text_file": "toy.more.csv"}


def test_item_text_file_adds_columns_by_item_id(tmp_path):
    """Columns of item_text_file join the .item file's by the id in its first column: quoted commas kept,
    '|' lists read as commas, unlisted items empty, and a name in both files read from the .item file."""
    config_dict = {**write_dataset(tmp_path), **write_side_file(tmp_path),
                   "item_text_fields": ["title", "overview", "cast"]}
    text = descriptions_of(Config(TextBPR, "toy", config_dict=config_dict), ("i0", "i1", "i2"))
    assert text == {
        "i0": "title: Red Lipstick; overview: A bold red.; cast: Ann, Bo",
        "i1": "title: Blue Nail Polish; overview: Blue, bright.",
        "i2": "",
    }


def test_item_text_file_missing_or_without_the_field_is_named(tmp_path):
    config_dict = {**write_dataset(tmp_path), "item_text_file": "absent.csv"}
    with pytest.raises(MissingTextFieldError, match=r"item_text_file names .*absent\.csv, which does not exist\. Fix:"):
        Config(TextBPR, "toy", config_dict=config_dict)
    config_dict = {**config_dict, **write_side_file(tmp_path), "item_text_fields": ["title", "plot"]}
    with pytest.raises(MissingTextFieldError, match=r"\['plot'\].* nor toy\.more\.csv \(columns \['overview', 'cast', 'title'\]\)"):
        Config(TextBPR, "toy", config_dict=config_dict)


def test_an_unset_item_text_file_leaves_digests_as_they_were():
    """Run folders and stage-1 caches written before item_text_file existed keep their names."""
    from recbole_llm.trainer.run_state import config_digest
    config = Config("BPR", "ml-100k")
    assert config["item_text_file"] is None
    digest = config_digest(config, set())
    del config.final_config_dict["item_text_file"]
    assert config_digest(config, set()) == digest
    config.final_config_dict["item_text_file"] = "ml-100k.more.csv"
    assert config_digest(config, set()) != digest


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared benchmark datasets not beside the checkout")
def test_ml1m_tmdb_preset_describes_movies_by_their_tmdb_records():
    config = Config(TextBPR, "ml-1m", config_file_list=["properties/ml-1m-tmdb.yaml"], config_dict={"data_path": str(SHARED)})
    toy_story = descriptions_of(config, ["1"])["1"]
    assert toy_story.startswith("movie_title: Toy Story; genre: Animation Children's Comedy; director: John Lasseter; "
                                "actors: Tom Hanks, Tim Allen") and "overview: Led by Woody" in toy_story
