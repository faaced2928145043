"""Data transforms: item text, prompts' text pieces, neighbour sampling."""

from recbole_llm.data.item_text import check_item_text_fields, item_descriptions

__all__ = ["check_item_text_fields", "item_descriptions"]
