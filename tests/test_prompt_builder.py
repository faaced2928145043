"""The soft-token prompt builder: layout, padding, position invariance, gradients, errors."""

import pytest
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2Model

from recbole_llm.llm import PromptBuilder, Soft, hidden_at, load_backbone

H = 64


@pytest.fixture(scope="module")
def llama(tiny_llm_path):
    return load_backbone({"llm_path": tiny_llm_path})


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory, tiny_llm_path):
    """A tiny GPT-2: absolute position embeddings, so unlike Llama's RoPE, which only sees position
    differences, it shows whether left padding shifts a prompt's positions."""
    path = tmp_path_factory.mktemp("tiny_gpt2")
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_path)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=H, n_layer=2, n_head=4, n_positions=128)
    GPT2Model(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return load_backbone({"llm_path": str(path)})


def _builder(lm, padding_side="left", add_bos=True):
    model, tokenizer = lm
    return PromptBuilder(tokenizer, model.get_input_embeddings(), padding_side=padding_side, add_bos=add_bos)


def _prompts():
    """Two prompts of different lengths sharing template text, with named and unnamed soft tokens."""
    torch.manual_seed(0)
    return [
        ["Select items interacted by the user. User token: ", Soft(torch.randn(1, H), "user"),
         " Item tokens: ", Soft(torch.randn(3, H), "items"), Soft(torch.randn(2, H)), " Answer: ",
         Soft(torch.randn(2, H), "slot")],
        ["User token: ", Soft(torch.randn(1, H), "user"), " Item tokens: ", Soft(torch.randn(3, H), "items"),
         Soft(torch.randn(2, H), "slot")],
    ]  # fmt: skip


def _length(lm, prompt, add_bos=True):
    tokenizer = lm[1]
    return int(add_bos) + sum(
        len(s.embeds) if isinstance(s, Soft) else len(tokenizer(s, add_special_tokens=False).input_ids) for s in prompt
    )


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_slot_positions_and_mask(llama, padding_side):
    prompts = _prompts()
    batch = _builder(llama, padding_side).build(prompts)
    lengths = [_length(llama, prompt) for prompt in prompts]
    B, L = len(prompts), max(lengths)
    assert batch.inputs_embeds.shape == (B, L, H)
    assert batch.attention_mask.shape == batch.position_ids.shape == (B, L)
    assert set(batch.positions) == {"user", "items", "slot"}
    for b, (prompt, length) in enumerate(zip(prompts, lengths)):
        real = torch.arange(L) >= L - length if padding_side == "left" else torch.arange(L) < length
        assert torch.equal(batch.attention_mask[b].bool(), real)
        assert torch.equal(batch.position_ids[b][real], torch.arange(length))
        assert torch.equal(batch.inputs_embeds[b][~real], torch.zeros(L - length, H))
        for segment in prompt:
            if isinstance(segment, Soft) and segment.name is not None:
                at = batch.positions[segment.name][b]
                assert torch.equal(batch.inputs_embeds[b, at], segment.embeds)
                assert real[at].all()


def test_repeated_name_concatenates_in_order(llama):
    a, b = torch.randn(1, H), torch.randn(2, H)
    batch = _builder(llama).build([[Soft(a, "x"), "the user", Soft(b, "x")]])
    assert batch.positions["x"].shape == (1, 3)
    assert torch.equal(batch.inputs_embeds[0, batch.positions["x"][0]], torch.cat([a, b]))


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_prompt_alone_equals_prompt_in_padded_batch(request, architecture, padding_side):
    lm = request.getfixturevalue(architecture)
    model = lm[0]
    builder = _builder(lm, padding_side)
    prompts = _prompts()
    with torch.no_grad():
        batched = hidden_at(model, builder.build(prompts), "slot")
        for b, prompt in enumerate(prompts):
            alone = hidden_at(model, builder.build([prompt]), "slot")
            torch.testing.assert_close(alone[0], batched[b], atol=1e-5, rtol=0)


def test_gradients_reach_soft_embeds(llama):
    user = torch.randn(1, H, requires_grad=True)
    items = torch.randn(3, H, dtype=torch.float64, requires_grad=True)  # cast to the LM's dtype
    batch = _builder(llama).build([["User token: ", Soft(user, "user"), " Item tokens: ", Soft(items, "items")]])
    assert batch.inputs_embeds.dtype == torch.float32
    hidden_at(llama[0], batch, "items").sum().backward()
    assert user.grad is not None and user.grad.abs().sum() > 0
    assert items.grad is not None and items.grad.abs().sum() > 0


def test_mismatched_slot_counts_raise(llama):
    prompts = [["a", Soft(torch.randn(2, H), "slot")], ["b", Soft(torch.randn(3, H), "slot")]]
    with pytest.raises(ValueError, match="'slot'"):
        _builder(llama).build(prompts)
    with pytest.raises(ValueError, match="'slot'"):
        _builder(llama).build([prompts[0], ["no slot here"]])


@pytest.mark.parametrize("add_bos", [True, False])
def test_text_has_no_special_tokens_but_optional_bos(llama, add_bos):
    model, tokenizer = llama
    text, tail = "User token:", " the user liked comedy"
    # This tokenizer adds BOS by itself, so a builder forgetting add_special_tokens=False shows up.
    assert tokenizer(text).input_ids[0] == tokenizer.bos_token_id
    ids = [tokenizer.bos_token_id] * add_bos
    ids += tokenizer(text, add_special_tokens=False).input_ids + tokenizer(tail, add_special_tokens=False).input_ids
    batch = _builder(llama, add_bos=add_bos).build([[text, tail]])
    expected = model.get_input_embeddings()(torch.tensor([ids]))
    assert torch.equal(batch.inputs_embeds, expected)


@pytest.mark.parametrize("lora_r", [0, 2])
def test_causal_lm_hidden_states_match_bare_backbone(llama, tiny_llm_path, lora_r):
    causal, _ = load_backbone({"llm_path": tiny_llm_path, "lora_r": lora_r}, causal_lm=True)
    batch = _builder(llama).build(_prompts())
    with torch.no_grad():  # LoRA starts as the identity, so the wrapped model must agree too
        torch.testing.assert_close(hidden_at(causal, batch, "slot"), hidden_at(llama[0], batch, "slot"))


def test_unknown_name_raises(llama):
    batch = _builder(llama).build([["the user", Soft(torch.randn(1, H), "user")]])
    with pytest.raises(KeyError, match="'item'.*'user'"):
        hidden_at(llama[0], batch, "item")


def _shared_start_prompts():
    """Three prompts opening with the same instruction, then soft tokens of different lengths."""
    torch.manual_seed(1)
    return [
        ["Select items interacted by the user. User token: ", Soft(torch.randn(n, H)), " Answer: ", Soft(torch.randn(2, H), "slot")]
        for n in (1, 4, 2)
    ]


def _all_states(model, batch):
    batch.positions["all"] = torch.arange(batch.attention_mask.shape[1]).expand_as(batch.attention_mask)
    return hidden_at(model, batch, "all")


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_shared_start_runs_once_with_the_same_states(request, monkeypatch, architecture, padding_side):
    import recbole_llm.llm.prompt as prompt_module

    lm = request.getfixturevalue(architecture)
    model, tokenizer = lm
    builder = _builder(lm, padding_side)
    batch = builder.build(_shared_start_prompts())
    instruction = tokenizer("Select items interacted by the user. User token: ", add_special_tokens=False).input_ids
    assert batch.shared_length == 1 + len(instruction)  # BOS + the instruction
    builder.share_prefix = False
    whole_batch = builder.build(_shared_start_prompts())

    calls = []
    once = prompt_module._hidden_with_shared_part_once
    monkeypatch.setattr(prompt_module, "_hidden_with_shared_part_once", lambda *a: calls.append(1) or once(*a))
    with torch.no_grad():
        shared_once = _all_states(model, batch)
        one_pass = _all_states(model, whole_batch)
    assert calls == [1]
    real = batch.attention_mask.bool()
    torch.testing.assert_close(shared_once[real], one_pass[real], atol=1e-5, rtol=1e-5)


def test_share_prefix_off_runs_every_prompt_whole_with_the_same_states(llama, monkeypatch):
    import recbole_llm.llm.prompt as prompt_module

    model, _ = llama
    builder = _builder(llama, "left")
    shared_batch = builder.build(_shared_start_prompts())
    builder.share_prefix = False
    whole_batch = builder.build(_shared_start_prompts())
    assert shared_batch.shared_length > 1 and whole_batch.shared_length == 0

    calls = []
    once = prompt_module._hidden_with_shared_part_once
    monkeypatch.setattr(prompt_module, "_hidden_with_shared_part_once", lambda *a: calls.append(1) or once(*a))
    with torch.no_grad():
        shared_once, whole = _all_states(model, shared_batch), _all_states(model, whole_batch)
    assert calls == [1]
    real = shared_batch.attention_mask.bool()
    torch.testing.assert_close(shared_once[real], whole[real], atol=1e-5, rtol=1e-5)


def test_shared_start_gives_lora_and_soft_tokens_the_same_gradients(tiny_llm_path):
    causal, tokenizer = load_backbone({"llm_path": tiny_llm_path, "lora_r": 2}, causal_lm=True)
    lora = [p for p in causal.parameters() if p.requires_grad]
    torch.manual_seed(0)
    for p in lora:  # LoRA's B starts at zero; give every adapter weight a value so gradients differ from 0
        p.data.normal_(0, 0.1)
    builder = PromptBuilder(tokenizer, causal.get_input_embeddings())

    def gradients():
        prompts = _shared_start_prompts()
        soft = [segment.embeds.requires_grad_() for prompt in prompts for segment in prompt if isinstance(segment, Soft)]
        causal.zero_grad()
        hidden_at(causal, builder.build(prompts), "slot").square().sum().backward()
        return [p.grad.clone() for p in lora] + [s.grad for s in soft]

    assert builder.build(_shared_start_prompts()).shared_length > 1
    shared_once = gradients()
    builder.share_prefix = False  # every prompt run whole, as a one-pass forward does
    one_pass = gradients()
    assert all(g.abs().sum() > 0 for g in shared_once)
    for a, b in zip(shared_once, one_pass):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_share_prefix_auto_shares_on_a_cpu_only(llama):
    builder = _builder(llama, "left")
    assert builder.share_prefix == "auto"
    assert builder.shares_prefix_on(torch.device("cpu")) and not builder.shares_prefix_on(torch.device("cuda"))
    assert builder.build(_shared_start_prompts()).shared_length > 1  # the tests' backbone is on the CPU
    builder.share_prefix = True
    assert builder.shares_prefix_on(torch.device("cuda"))


def _text_lead_prompts():
    """Stage-2-like prompts: an instruction, then descriptions of different lengths before the first soft token."""
    torch.manual_seed(2)
    descriptions = ["1. red lipstick; 2. a shampoo for dry hair", "1. nail polish", "1. a long description of a face cream, "
                    "with its brand, its size and what it is for; 2. soap"]
    return [
        ["Shuffled descriptions: ", text, " Item tokens: ", Soft(torch.randn(n, H).requires_grad_()),
         " Answer: ", Soft(torch.randn(2, H).requires_grad_(), "slot")]
        for text, n in zip(descriptions, (2, 1, 2))
    ]  # fmt: skip


def test_text_lead_counts_the_tokens_before_each_first_soft_token(llama):
    prompts = _text_lead_prompts()
    batch = _builder(llama).build(prompts)
    tokenizer = llama[1]
    for prompt, lead in zip(prompts, batch.text_lead):
        assert lead == 1 + sum(len(tokenizer(s, add_special_tokens=False).input_ids) for s in prompt[:3])
    assert max(batch.text_lead) > batch.shared_length
    builder = _builder(llama)
    builder.share_prefix = False
    assert builder.build(prompts).text_lead is None


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_text_lead_runs_without_a_gradient_with_the_same_states_and_gradients(request, monkeypatch, architecture,
                                                                              padding_side):
    import recbole_llm.llm.prompt as prompt_module

    lm = request.getfixturevalue(architecture)
    model = lm[0]
    assert not any(p.requires_grad for p in model.parameters())  # a frozen backbone, as in GLTA's stage 2
    calls = []
    ungraded = prompt_module._hidden_with_text_lead_ungraded
    monkeypatch.setattr(prompt_module, "_hidden_with_text_lead_ungraded", lambda *a: calls.append(1) or ungraded(*a))

    def run(share_prefix):
        prompts = _text_lead_prompts()
        builder = _builder(lm, padding_side)
        builder.share_prefix = share_prefix
        batch = builder.build(prompts)
        states = _all_states(model, batch)
        states[batch.attention_mask.bool()].square().sum().backward()
        soft = [segment.embeds.grad for prompt in prompts for segment in prompt if isinstance(segment, Soft)]
        return states.detach(), batch.attention_mask.bool(), soft

    ungraded_lead, real, lead_gradients = run(True)
    assert calls == [1]
    one_pass, one_pass_real, one_pass_gradients = run(False)
    assert calls == [1]
    assert torch.equal(real, one_pass_real)
    torch.testing.assert_close(ungraded_lead[real], one_pass[real], atol=1e-5, rtol=1e-5)
    assert all(g is not None and g.abs().sum() > 0 for g in lead_gradients)
    for a, b in zip(lead_gradients, one_pass_gradients):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_text_lead_keeps_its_gradient_where_the_backbone_trains_or_none_is_recorded(tiny_llm_path, llama, monkeypatch):
    import recbole_llm.llm.prompt as prompt_module

    calls = []
    monkeypatch.setattr(prompt_module, "_hidden_with_text_lead_ungraded", lambda *a: calls.append(1))
    causal, tokenizer = load_backbone({"llm_path": tiny_llm_path, "lora_r": 2}, causal_lm=True)
    builder = PromptBuilder(tokenizer, causal.get_input_embeddings())
    hidden_at(causal, builder.build(_text_lead_prompts()), "slot")  # LoRA trains: the leads reach its weights
    with torch.no_grad():
        hidden_at(llama[0], _builder(llama).build(_text_lead_prompts()), "slot")  # nothing to save
    assert calls == []
