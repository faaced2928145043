"""Data transforms: item text, users' generated texts, frozen text embeddings.

Only the item-text helpers are imported here: every run reads its config through them, and
``text_embedding`` loads transformers, which a stock model's run does not need.
"""

from recbole_llm.data.item_text import check_item_text_fields, item_descriptions

__all__ = ["check_item_text_fields", "item_descriptions"]
