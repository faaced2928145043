"""Options for training LLM-backed models at scale: accumulation, checkpointing, mixed precision."""

import pytest
import torch

from recbole_llm.errors import ConfigValueError
from recbole_llm.llm import load_backbone
from recbole_llm.trainer.accumulation import GradientAccumulation, accumulate


def test_accumulated_step_equals_one_step_on_the_mean_gradient():
    torch.manual_seed(0)
    batches = [torch.randn(8, 3) for _ in range(4)]
    w_acc, w_ref = torch.nn.Parameter(torch.randn(3)), None
    w_ref = torch.nn.Parameter(w_acc.detach().clone())
    acc = GradientAccumulation(torch.optim.SGD([w_acc], lr=0.1), steps=2)
    ref = torch.optim.SGD([w_ref], lr=0.1)
    for x in batches:  # RecBole's loop: zero_grad, backward, step, every batch
        acc.zero_grad()
        (x @ w_acc).pow(2).mean().backward()
        acc.step()
    for pair in (batches[:2], batches[2:]):
        ref.zero_grad()
        (sum((x @ w_ref).pow(2).mean() for x in pair) / 2).backward()
        ref.step()
    assert torch.allclose(w_acc, w_ref, atol=1e-6)
    restored = GradientAccumulation(torch.optim.SGD([w_acc], lr=0.1), steps=2)
    restored.load_state_dict(acc.state_dict())
    assert restored.calls == 4


def test_accumulation_steps_are_checked():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert accumulate(opt, {"gradient_accumulation_steps": 1}) is opt
    with pytest.raises(ConfigValueError, match="gradient_accumulation_steps"):
        accumulate(opt, {"gradient_accumulation_steps": 0})


def test_gradient_checkpointing_gives_the_same_gradients(tiny_llm_path):
    grads = []
    for checkpointing in (False, True):
        model, _ = load_backbone({"llm_path": tiny_llm_path, "llm_gradient_checkpointing": checkpointing})
        model.train()  # transformers checkpoints only in training mode (the tiny Llama has no dropout)
        assert model.is_gradient_checkpointing == checkpointing
        torch.manual_seed(0)
        soft = torch.randn(2, 7, 64, requires_grad=True)
        model(inputs_embeds=soft).last_hidden_state.sum().backward()
        grads.append(soft.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


@pytest.mark.slow
def test_glta_trains_with_bf16_autocast_and_accumulation(tiny_llm_path, tmp_path):
    from recbole_llm.quick_start import run_recbole_llm

    result = run_recbole_llm("GLTA", "ml-100k", config_dict={
        "llm_path": tiny_llm_path, "llm_num_layers": None, "llm_cache_dir": str(tmp_path), "checkpoint_dir": str(tmp_path),
        "graph_epochs": 1, "item_alignment_epochs": 1, "user_alignment_epochs": 1, "user_alignment_batch_size": 64,
        "item_alignment_batch_size": 32, "max_history": 10, "enable_amp": True, "gradient_accumulation_steps": 2,
        "llm_gradient_checkpointing": True, "show_progress": False, "state": "WARNING",
        "metrics": ["NDCG"], "topk": [10], "valid_metric": "NDCG@10",
    })
    assert 0 < result["test_result"]["ndcg@10"] < 1
