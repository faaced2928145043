"""Data transforms: item text, users' generated texts, frozen text embeddings."""

from recbole_llm.data.item_text import check_item_text_fields, item_descriptions
from recbole_llm.data.text_embedding import text_embeddings

__all__ = ["check_item_text_fields", "item_descriptions", "text_embeddings"]
