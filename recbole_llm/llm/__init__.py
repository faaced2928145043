"""The language-model side shared by every plugin model: backbone loading and soft-token prompts."""

from recbole_llm.llm.backbone import DEFAULT_LLM, LLM_KEYS, llm_hidden_size, load_backbone, resolve_llm_path
from recbole_llm.llm.prompt import PromptBatch, PromptBuilder, PromptTemplate, Soft, hidden_at, render_chat

__all__ = [
    "DEFAULT_LLM",
    "LLM_KEYS",
    "PromptBatch",
    "PromptBuilder",
    "PromptTemplate",
    "Soft",
    "hidden_at",
    "llm_hidden_size",
    "load_backbone",
    "render_chat",
    "resolve_llm_path",
]
