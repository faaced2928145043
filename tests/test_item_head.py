"""The GLLM item head refuses a mode it does not have, naming the key and the fix."""

import pytest

from recbole_llm.errors import ConfigValueError
from recbole_llm.model.item_head import GLLMHead


def test_a_bad_head_mode_names_the_key():
    with pytest.raises(ConfigValueError, match="gllm_head='shared'.*Fix:"):
        GLLMHead(8, 5, "shared")
