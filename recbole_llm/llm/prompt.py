"""Soft-token prompts: text and embeddings interleaved in the LM's input space, batched.

GLTA, GAL-Rec and the text-aware baselines all feed the LM prompts that mix template text with
soft tokens (projected user/item embeddings, learned task and hop tokens) and read its hidden
states back at chosen slots. A prompt is a list of segments, each a ``str`` or a ``Soft``;
``PromptBuilder.build`` turns a batch of them into ``inputs_embeds`` plus the indices of every
named soft segment, and ``hidden_at`` reads the last hidden states there.

Each text segment is tokenized on its own (no special tokens), so whitespace at a segment's edges
is the caller's: write ``"Item tokens: "`` rather than ``"Item tokens:"`` if the space matters.
"""

import inspect
import re
from dataclasses import dataclass

import torch
from peft import PeftModel
from torch import Tensor, nn
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from recbole_llm.errors import ConfigValueError
from recbole_llm.llm.backbone import activation_checkpointing


@dataclass
class Soft:
    """Soft tokens: ``embeds`` [n, h], already in the LM's input space (gradients flow into them).

    ``name`` makes their positions retrievable from ``PromptBatch.positions``.
    """

    embeds: Tensor
    name: str | None = None

    def __post_init__(self):
        if self.embeds.dim() != 2:
            raise ValueError(f"Soft embeds must be [n, h]; got shape {tuple(self.embeds.shape)}")


@dataclass
class PromptBatch:
    """A padded batch of prompts, ready for the backbone.

    ``position_ids`` count real tokens only, so a prompt gets the same positions, hence the same
    hidden states, whatever padding the batch adds. ``positions[name]`` [B, n] holds the indices
    into the sequence dimension of the soft tokens named ``name``, in prompt order.

    The first ``shared_length`` real tokens are the same in every prompt (the BOS and the template
    text before the first placeholder), so ``hidden_at`` can run them once for the whole batch.
    ``text_lead[b]`` counts prompt b's real tokens before its first soft token (``None`` where the
    builder shares nothing): with a frozen backbone no gradient reaches them, so ``hidden_at`` can run
    them without one.
    """

    inputs_embeds: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    positions: dict[str, Tensor]
    shared_length: int = 0
    text_lead: list[int] | None = None


class PromptBuilder:
    """Assembles prompts of text and ``Soft`` segments into one padded ``PromptBatch``.

    Text is tokenized once per distinct string (template pieces repeat in every prompt, so token
    ids are cached for the builder's lifetime), embedded with a single lookup, and gathered with
    the soft tokens into the batch by one indexing operation. Padding rows are zero vectors; the
    attention mask hides them. The BOS and a text segment that starts every prompt of the batch
    are its shared part (``PromptBatch.shared_length``), which ``hidden_at`` runs once; the text
    before each prompt's first soft token is its lead (``PromptBatch.text_lead``), which ``hidden_at``
    runs without a gradient when the backbone is frozen. ``share_prefix=False`` (also settable on a
    built model's builder) reports neither, so every prompt runs its full length, as a one-pass
    forward does: the states are the same up to float rounding, and ``benchmarks/glta_throughput.py``
    and ``benchmarks/glta_item_alignment_step.py`` time the ways. The default, ``"auto"``,
    shares on a CPU only: there the shared part's compute is what a step saves, while on a GPU the
    second pass's kernel launches cost more than the few rows it saves (``results/gpu_paper_shape.md``).
    """

    def __init__(
        self,
        tokenizer,
        input_embeddings: nn.Embedding,
        padding_side: str = "left",
        add_bos: bool = True,
        share_prefix: bool | str = "auto",
    ):
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
        if share_prefix not in (True, False, "auto"):
            raise ValueError(f"share_prefix must be True, False or 'auto', not {share_prefix!r}")
        self.tokenizer = tokenizer
        self.input_embeddings = input_embeddings
        self.padding_side = padding_side
        self.prefix_ids = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
        self.share_prefix = share_prefix
        self._token_ids: dict[str, list[int]] = {}

    def shares_prefix_on(self, device: torch.device) -> bool:
        """Whether a batch built on ``device`` reports its shared part (``share_prefix``; ``"auto"``: on a CPU)."""
        return device.type == "cpu" if self.share_prefix == "auto" else bool(self.share_prefix)

    def _tokenize(self, texts: list[str]) -> None:
        new = [text for text in texts if text not in self._token_ids]
        if new:
            ids = self.tokenizer(new, add_special_tokens=False)["input_ids"]
            self._token_ids.update(zip(new, ids))

    def build(self, prompts: list[list[str | Soft]]) -> PromptBatch:
        texts = list(dict.fromkeys(segment for prompt in prompts for segment in prompt if isinstance(segment, str)))
        self._tokenize(texts)

        # One table of rows to gather from: the prefix, each distinct text's tokens, each soft
        # segment's embeddings, then a zero row for padding. A prompt becomes a list of row indices.
        ids, text_offset = list(self.prefix_ids), {}
        for text in texts:
            text_offset[text] = len(ids)
            ids.extend(self._token_ids[text])
        weight = self.input_embeddings.weight
        rows = [self.input_embeddings(torch.tensor(ids, dtype=torch.long, device=weight.device))]
        next_row = len(ids)

        indices, named, lead = [], [], []
        for prompt in prompts:
            index, slots, first_soft = list(range(len(self.prefix_ids))), {}, None
            for segment in prompt:
                if first_soft is None and not isinstance(segment, str):
                    first_soft = len(index)
                if isinstance(segment, str):
                    start, length = text_offset[segment], len(self._token_ids[segment])
                else:
                    rows.append(segment.embeds.to(device=weight.device, dtype=weight.dtype))
                    start, length = next_row, len(segment.embeds)
                    next_row += length
                    if segment.name is not None:
                        slots.setdefault(segment.name, []).extend(range(len(index), len(index) + length))
                index.extend(range(start, start + length))
            lead.append(len(index) if first_soft is None else first_soft)  # all of it where no soft segment
            indices.append(index)
            named.append(slots)
        rows.append(weight.new_zeros(1, weight.shape[1]))
        table = torch.cat(rows)

        shared = len(self.prefix_ids)
        first = prompts[0][0] if prompts and prompts[0] else None
        if isinstance(first, str) and all(prompt and prompt[0] == first for prompt in prompts):
            shared += len(self._token_ids[first])
        if not self.shares_prefix_on(weight.device):
            shared, lead = 0, None

        seq_len = max(len(index) for index in indices)
        gather = torch.full((len(prompts), seq_len), next_row, dtype=torch.long)
        offsets = []
        for b, index in enumerate(indices):
            offset = seq_len - len(index) if self.padding_side == "left" else 0
            gather[b, offset : offset + len(index)] = torch.tensor(index, dtype=torch.long)
            offsets.append(offset)
        gather = gather.to(weight.device)
        attention_mask = (gather != next_row).long()
        return PromptBatch(
            inputs_embeds=table[gather],
            attention_mask=attention_mask,
            position_ids=(attention_mask.cumsum(dim=1) - 1).clamp(min=0),
            positions=self._positions(named, offsets, weight.device),
            shared_length=shared,
            text_lead=lead,
        )

    @staticmethod
    def _positions(named: list[dict[str, list[int]]], offsets: list[int], device) -> dict[str, Tensor]:
        positions = {}
        for name in {name for slots in named for name in slots}:
            counts = {len(slots.get(name, [])) for slots in named}
            if len(counts) > 1:
                raise ValueError(
                    f"Soft segment {name!r} covers {sorted(counts)} tokens in different prompts of one "
                    f"batch; every prompt must have the same number so positions form a [B, n] tensor"
                )
            positions[name] = torch.tensor(
                [[offset + i for i in slots[name]] for slots, offset in zip(named, offsets)], device=device
            )
        return positions


def hidden_at(backbone: nn.Module, batch: PromptBatch, name: str) -> Tensor:
    """Last-layer hidden states [B, n, h] at the soft tokens named ``name``, as one forward pass gives them.

    Accepts the bare backbone, a CausalLM (its LM head is skipped: only hidden states are needed),
    an encoder, or any of them wrapped by peft (LoRA layers sit inside the wrapped model). A causal
    decoder may run in two passes that give the same states up to float rounding: each prompt's text
    lead without a gradient when the backbone is frozen and the leads are longer than the shared part
    (GLTA's item-alignment prompts), otherwise the batch's shared part once.
    """
    if name not in batch.positions:
        raise KeyError(f"No soft segment named {name!r} in this batch; it has {sorted(batch.positions)}")
    model = backbone.get_base_model() if isinstance(backbone, PeftModel) else backbone
    model = model.base_model
    parameters = inspect.signature(model.forward).parameters
    size, length = batch.attention_mask.shape
    cache_key = _cache_keyword(parameters)
    two_passes = cache_key is not None and _runs_shared_part_once(model, parameters)
    if two_passes and _lead_is_worth_a_pass(model, batch):
        hidden = _hidden_with_text_lead_ungraded(model, batch, cache_key)
    elif two_passes and 1 < batch.shared_length < length and size > 1:
        hidden = _hidden_with_shared_part_once(model, batch, cache_key)
    else:
        inputs = {"inputs_embeds": batch.inputs_embeds, "attention_mask": batch.attention_mask}
        # Relative-position encoders (T5) take no position_ids; decoders would build a KV cache otherwise.
        if "position_ids" in parameters:
            inputs["position_ids"] = batch.position_ids
        if "use_cache" in parameters:
            inputs["use_cache"] = False
        hidden = model(**inputs).last_hidden_state
    positions = batch.positions[name]
    rows = torch.arange(len(positions), device=positions.device).unsqueeze(1)
    return hidden[rows, positions]


def _cache_keyword(parameters) -> str | None:
    """The name under which the decoder's ``forward`` takes (and its output returns) the KV cache.

    transformers 4.x and early 5.x say ``past_key_values``; 5.24 renamed it ``cache``. Checking the
    signature, not the version, keeps the fast path on whatever the installed release calls it.
    """
    return next((key for key in ("cache", "past_key_values") if key in parameters), None)


def _runs_shared_part_once(model: nn.Module, parameters) -> bool:
    """Whether ``model`` is a causal decoder whose KV cache can carry the batch's shared part.

    Causal, because a token's state must not depend on what follows it (a bidirectional encoder
    would see the rest); no gradient checkpointing, whose recomputation would grow the cache twice.
    """
    config = model.config
    causal = (
        not getattr(config, "is_encoder_decoder", False)
        and config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES  # BERT-likes: bidirectional unless is_decoder
    )
    return (
        causal
        and {"position_ids", "use_cache"} <= set(parameters)
        and not activation_checkpointing(model)
    )


def _hidden_with_shared_part_once(model: nn.Module, batch: PromptBatch, cache_key: str) -> Tensor:
    """Last hidden states [B, L, h] with the shared first tokens run once, not once per prompt.

    Every prompt of the batch starts with the same ``shared_length`` tokens (the chat template and
    instruction, a large part of GLTA's user prompts: results/glta-throughput.md), and in a causal
    decoder their states, keys and values do not depend on what follows. One forward of them
    (batch 1) fills a KV cache, repeated over the batch; the rest of every prompt (still padded on
    its side) runs on top of it with its attention mask and position ids, and the states go back
    to the batch's layout. Every
    state equals the one-pass forward's up to float rounding, and gradients reach LoRA weights
    through the cache as they would through the one pass.
    """
    shared, (size, length) = batch.shared_length, batch.attention_mask.shape
    steps = torch.arange(length, device=batch.attention_mask.device)
    offset = _padding_before(batch.attention_mask)
    before = steps < offset
    # The rest of prompt b, keeping its padding in place: position j < offset is padding, and
    # position j >= offset holds what was at j + shared.
    rest_index = torch.where(before, steps, steps + shared)[:, : length - shared]
    first = model(
        inputs_embeds=batch.inputs_embeds[:1].gather(1, _rows(offset[:1] + steps[:shared], batch.inputs_embeds)),
        attention_mask=torch.ones(1, shared, dtype=batch.attention_mask.dtype, device=steps.device),
        position_ids=steps[:shared].unsqueeze(0),
        use_cache=True,
    )
    cache = getattr(first, cache_key)
    cache.batch_repeat_interleave(size)
    rest_mask = batch.attention_mask.gather(1, rest_index)
    rest = model(
        inputs_embeds=batch.inputs_embeds.gather(1, _rows(rest_index, batch.inputs_embeds)),
        attention_mask=torch.cat([rest_mask.new_ones(size, shared), rest_mask], dim=1),
        position_ids=batch.position_ids.gather(1, rest_index),
        use_cache=True,
        **{cache_key: cache},
    ).last_hidden_state
    # Back to the batch's layout: [shared states of the first pass, states of the rest], indexed by
    # position i: a shared token (offset <= i < offset + shared) at i - offset, padding before it at
    # shared + i, the rest at i (it was read from i, placed at i - shared, after the shared states).
    states = torch.cat([first.last_hidden_state.expand(size, -1, -1), rest], dim=1)
    in_shared = ~before & (steps < offset + shared)
    back = torch.where(in_shared, steps - offset, torch.where(before, steps + shared, steps))
    return states.gather(1, _rows(back, states))


def _lead_is_worth_a_pass(model: nn.Module, batch: PromptBatch) -> bool:
    """Whether ``hidden_at`` should run each prompt's text lead without a gradient.

    Only while a gradient is recorded and no weight of the backbone takes one (then nothing before a
    prompt's first soft token can reach a trained parameter), and only where some prompt's lead is
    longer than the shared part (otherwise running that part once is the cheaper way).
    """
    lead = batch.text_lead
    return (
        lead is not None
        and torch.is_grad_enabled()
        and max(lead, default=0) > max(batch.shared_length, 1)
        and min(lead) >= 1
        and not any(parameter.requires_grad for parameter in model.parameters())
    )


def _hidden_with_text_lead_ungraded(model: nn.Module, batch: PromptBatch, cache_key: str) -> Tensor:
    """Last hidden states [B, L, h] with each prompt's text lead run under ``torch.no_grad``.

    GLTA's item-alignment prompts carry five item descriptions before their first soft token: most
    of each prompt's tokens. With the backbone frozen their states are constants, yet a one-pass
    forward records them, and its backward carries gradients through every layer at their positions
    for nothing. Here the leads (left-padded, so they end together) run first without a gradient and
    fill a KV cache; the rest of every prompt (right-padded) runs on top of it with the gradient, its
    attention mask and its position ids; the states go back to the batch's layout. Every state equals
    the one-pass forward's up to float rounding, and so does every gradient that reaches a soft token.
    """
    mask = batch.attention_mask
    length, device = mask.shape[1], mask.device
    lead = torch.tensor(batch.text_lead, device=device).unsqueeze(1)
    real = mask.sum(dim=1, keepdim=True)
    offset = _padding_before(mask)
    lead_len, rest_len = int(lead.max()), max(int((real - lead).max()), 1)

    # The leads, left-padded to lead_len: column j holds real token j - (lead_len - lead_b).
    token = torch.arange(lead_len, device=device) - (lead_len - lead)
    lead_mask = (token >= 0).long()
    lead_index = (offset + token.clamp(min=0)).clamp(max=length - 1)
    # The rests, right-padded to rest_len: column j holds real token lead_b + j.
    token = lead + torch.arange(rest_len, device=device)
    rest_mask = (token < real).long()
    rest_index = (offset + token).clamp(max=length - 1)

    with torch.no_grad():
        first = model(
            inputs_embeds=batch.inputs_embeds.gather(1, _rows(lead_index, batch.inputs_embeds)),
            attention_mask=lead_mask,
            position_ids=batch.position_ids.gather(1, lead_index) * lead_mask,
            use_cache=True,
        )
    rest = model(
        inputs_embeds=batch.inputs_embeds.gather(1, _rows(rest_index, batch.inputs_embeds)),
        attention_mask=torch.cat([lead_mask, rest_mask], dim=1),
        position_ids=torch.where(rest_mask.bool(), batch.position_ids.gather(1, rest_index), 0),
        use_cache=True,
        **{cache_key: getattr(first, cache_key)},
    ).last_hidden_state
    # Back to the batch's layout: real token r of prompt b (at offset_b + r) comes from the lead's
    # column lead_len - lead_b + r, or from the rest's column lead_len + r - lead_b; padding from column 0.
    token = torch.arange(length, device=device) - offset
    back = torch.where(token < lead, lead_len - lead + token, lead_len + token - lead)
    back = torch.where((token >= 0) & (token < real), back, 0)
    states = torch.cat([first.last_hidden_state, rest], dim=1)
    return states.gather(1, _rows(back, states))


def _padding_before(mask: Tensor) -> Tensor:
    """[B, 1]: the padding before each prompt's first real token (its left padding; 0 under right padding)."""
    return (mask == 0).long().cumprod(dim=1).sum(dim=1, keepdim=True)


def _rows(index: Tensor, values: Tensor) -> Tensor:
    """``index`` [B, n] expanded to gather whole rows of ``values`` [B, L, h] along dim 1."""
    return index.unsqueeze(-1).expand(-1, -1, values.shape[-1])


def render_chat(tokenizer, user: str, system: str | None = None) -> str:
    """One turn in the backbone's chat format, ending where the assistant's answer starts.

    A backbone without a chat template gets plain ``system\nuser\n``.
    """
    if getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{system}\n{user}\n" if system else f"{user}\n"


class PromptTemplate:
    """An instruction in the backbone's chat format whose ``{placeholders}`` become text or soft tokens.

    The chat template is rendered once (system + user turn + the assistant's opening, after which
    models put their output slots, see ``render_chat``); ``fill`` then only substitutes. When the
    rendered chat text carries its own start token, the builder must not add a BOS: see ``adds_bos``.
    """

    _PLACEHOLDER = re.compile(r"\{(\w+)\}")

    def __init__(self, tokenizer, system: str, user: str, placeholders=None, keys=()):
        """``placeholders``: the names the model fills; any other name in ``system`` or ``user`` (read
        from the config ``keys``) is refused here, before training, not at the first batch that fills it."""
        rendered = render_chat(tokenizer, user, system)
        self.adds_bos = tokenizer.bos_token is not None and rendered.startswith(tokenizer.bos_token)
        self.pieces = self._PLACEHOLDER.split(rendered)
        self.names = set(self.pieces[1::2])
        unknown = self.names - set(placeholders) if placeholders is not None else set()
        if unknown:
            shown = ", ".join(f"{{{name}}}" for name in sorted(unknown))
            allowed = ", ".join(f"{{{name}}}" for name in sorted(placeholders)) or "none"
            raise ConfigValueError(
                f"{' / '.join(keys) or 'The prompt'} uses {shown}, which the model never fills (it fills {allowed}). "
                f"Fix: spell the placeholders as listed, or write the text without braces."
            )

    def fill(self, **values) -> list[str | Soft]:
        """Segments with every placeholder replaced: a ``str``, a ``Soft`` or a list of them."""
        missing = self.names - set(values)
        if missing:
            raise KeyError(f"Prompt placeholders without a value: {sorted(missing)}")
        segments = []
        for index, piece in enumerate(self.pieces):
            value = values[piece] if index % 2 else piece
            for segment in value if isinstance(value, list) else [value]:
                if not (isinstance(segment, str) and segment == ""):
                    segments.append(segment)
        return segments
