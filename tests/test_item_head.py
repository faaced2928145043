"""The GLLM head's input normalisation: ``head_norm: batch`` takes out what every prompt's state shares."""

import pytest
import torch

from recbole_llm.errors import ConfigValueError
from recbole_llm.model.item_head import GLLMHead


def test_batch_norm_removes_a_state_shared_by_every_prompt():
    torch.manual_seed(0)
    hidden = torch.randn(64, 3, 16)  # [batch, output slots, hidden]
    shared = torch.zeros(16)
    shared[[2, 7]] = 40.0  # "massive activation" dimensions, the same for every prompt
    heads = [GLLMHead(16, 10, "linear", norm) for norm in ("batch", "batch", "none")]
    heads[1].load_state_dict(heads[0].state_dict())
    heads[2].linear.load_state_dict(heads[0].linear.state_dict())
    for _ in range(200):  # running statistics settle in training mode
        heads[0](hidden)
        heads[1](hidden + shared)
    for head in heads:
        head.eval()
    with torch.no_grad():
        assert torch.allclose(heads[0](hidden), heads[1](hidden + shared), atol=1e-4)
        # Without it the shared part moves every prompt's logits alike, by far more than they differ.
        plain = heads[2](hidden + shared) - heads[2](hidden)
        assert torch.allclose(plain, plain[0, 0].expand_as(plain), atol=1e-4) and plain.abs().max() > 1
    assert heads[0](hidden).shape == (64, 3, 10)


def test_tied_head_with_batch_norm_reads_item_tokens():
    head = GLLMHead(8, 5, "tied", "batch").eval()
    tokens = torch.randn(5, 8)
    assert head(torch.randn(4, 8), tokens).shape == (4, 5)


@pytest.mark.parametrize("mode, norm, key", [("shared", "none", "gllm_head"), ("tied", "layer", "head_norm")])
def test_bad_head_settings_name_the_key(mode, norm, key):
    with pytest.raises(ConfigValueError, match=key):
        GLLMHead(8, 5, mode, norm)
