"""Frozen text embeddings: one vector per item and user, training items only, cached once."""

import pytest
import torch
from recbole.data import create_dataset, data_preparation

from recbole_llm.config import Config
from recbole_llm.data import text_embedding
from recbole_llm.data.item_text import item_descriptions


def test_embeddings_cover_every_id_and_are_read_from_the_cache(tiny_llm_path, tmp_path, monkeypatch):
    config = Config("BPR", "ml-100k", config_dict={
        "llm_path": tiny_llm_path, "llm_cache_dir": str(tmp_path), "state": "WARNING", "user_text_items": 3})
    train, _, _ = data_preparation(config, create_dataset(config))
    dataset = train._dataset
    users, items = text_embedding.text_embeddings(dataset, config)
    assert users.shape == (dataset.user_num, 64) and items.shape == (dataset.item_num, 64)
    assert torch.all(items[0] == 0) and torch.all(users[0] == 0)
    assert torch.isfinite(items).all() and items[1:].norm(dim=1).min() > 0
    assert len(list((tmp_path / "text_embedding").glob("*.pt"))) == 1

    # The second call must not touch the backbone.
    monkeypatch.setattr(text_embedding, "load_backbone", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    users2, items2 = text_embedding.text_embeddings(dataset, config)
    assert torch.equal(users, users2) and torch.equal(items, items2)


def test_user_texts_use_training_items_only():
    config = Config("BPR", "ml-100k", config_dict={"state": "WARNING"})
    train, valid, _ = data_preparation(config, create_dataset(config))
    descriptions = item_descriptions(train._dataset)
    texts = text_embedding.user_profile_texts(train._dataset, descriptions, n_items=10_000)
    user = int(valid._dataset.inter_feat[config["USER_ID_FIELD"]][0])
    held_out = int(valid._dataset.inter_feat[config["ITEM_ID_FIELD"]][0])
    trained = train._dataset.inter_matrix(form="csr")[user].indices
    assert held_out not in trained
    assert all(descriptions[i] in texts[user] for i in trained)
    assert texts[user].count(";") == len(trained) - 1


def test_user_text_generation_resumes_after_a_kill(tiny_llm_path, tmp_path, monkeypatch):
    from recbole_llm.data import user_text

    config = {"profile_words": 3, "prediction_words": 3, "user_text_items": 2, "user_text_max_tokens": 3,
              "llm_path": tiny_llm_path, "llm_dtype": "float32", "dataset": "toy"}
    history = [[]] + [[i % 5 + 1, (i * 3) % 5 + 1] for i in range(9)]  # user 0 is the padding user
    descriptions = ["", "a red lamp", "a blue chair", "jazz records", "a novel", "garden tools"]
    monkeypatch.setattr(user_text, "SAVE_EVERY", 1)
    whole = user_text.user_texts({**config, "llm_cache_dir": str(tmp_path / "whole")}, None, history, descriptions,
                                 "profile", batch_size=2)

    calls, load = [], user_text.load_backbone

    def killed_after(n):
        def load_counting(*args, **kwargs):
            generator, tokenizer = load(*args, **kwargs)
            generate = generator.generate

            def counted(**inputs):
                if len(calls) == n:
                    raise KeyboardInterrupt
                calls.append(len(inputs["input_ids"]))
                return generate(**inputs)

            generator.generate = counted
            return generator, tokenizer
        return load_counting

    config["llm_cache_dir"] = str(tmp_path / "killed")
    monkeypatch.setattr(user_text, "load_backbone", killed_after(2))
    with pytest.raises(KeyboardInterrupt):
        user_text.user_texts(config, None, history, descriptions, "profile", batch_size=2)
    assert len(list((tmp_path / "killed" / "user_text").glob("*.partial.json"))) == 1

    calls.clear()
    monkeypatch.setattr(user_text, "load_backbone", killed_after(None))
    assert user_text.user_texts(config, None, history, descriptions, "profile", batch_size=2) == whole
    assert calls == [2, 2, 1]  # users 5-9: the 4 generated before the kill were kept
    assert [p.name.endswith(".partial.json") for p in (tmp_path / "killed" / "user_text").iterdir()] == [False]


@pytest.mark.parametrize("kind, prefix", [("profile", "User tags:"), ("prediction", "Interests:")])
def test_user_text_generation_starts_the_answer(tiny_llm_path, tmp_path, monkeypatch, kind, prefix):
    """The prompt ends in the answer's first word, so the model continues a list instead of echoing the prompt."""
    from recbole_llm.data import user_text

    config = {"profile_words": 3, "prediction_words": 3, "user_text_items": 2, "user_text_max_tokens": 2,
              "llm_path": tiny_llm_path, "llm_dtype": "float32", "dataset": "toy", "llm_cache_dir": str(tmp_path)}
    prompts, load = [], user_text.load_backbone

    def load_recording(*args, **kwargs):
        generator, tokenizer = load(*args, **kwargs)
        generate = generator.generate

        def recorded(**inputs):
            prompts.extend(tokenizer.batch_decode(inputs["input_ids"], skip_special_tokens=False))
            return generate(**inputs)

        generator.generate = recorded
        return generator, tokenizer

    monkeypatch.setattr(user_text, "load_backbone", load_recording)
    texts = user_text.user_texts(config, None, [[], [1, 2], [3]], ["", "a red lamp", "a blue chair", "jazz records"],
                                 kind)
    # The tiny tokenizer has no chat template, so the user turn is followed by a newline (``render_chat``).
    assert len(prompts) == 2 and all(p.endswith("separated by commas.\n" + prefix) for p in prompts)
    assert texts[0] == "" and all(prefix not in text for text in texts[1:])
