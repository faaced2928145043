"""What every LLM-backed plugin model (GLTA, GAL-Rec) does with its frozen backbone."""

from recbole_llm.llm.backbone import activation_checkpointing


class FrozenBackboneMixin:
    """Checkpoints without the frozen backbone, and the backbone kept in eval mode.

    Expects ``self.llm`` (from ``load_backbone``) and ``self.lora`` (whether LoRA adapters train).
    """

    def _is_frozen_llm_key(self, key):
        return key.startswith("llm.") and "lora_" not in key

    def state_dict(self, *args, **kwargs):
        """Everything but the frozen backbone, which is reloaded from ``llm_path`` (LoRA weights stay)."""
        state = super().state_dict(*args, **kwargs)
        for key in [k for k in state if self._is_frozen_llm_key(k)]:
            del state[key]
        return state

    def load_state_dict(self, state_dict, strict=True, assign=False):
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if not self._is_frozen_llm_key(k)]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"{type(self).__name__} checkpoint does not fit: missing {missing}, "
                               f"unexpected {result.unexpected_keys}")
        return result

    def train(self, mode=True):
        """The frozen backbone stays in eval mode (no dropout) unless LoRA adapters train or gradient
        checkpointing is on (transformers only checkpoints layers in training mode)."""
        super().train(mode)
        if not (self.lora or activation_checkpointing(self.llm)):
            self.llm.eval()
        return self
