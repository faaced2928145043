"""Stage 1 of GLTA and GAL-Rec: a LightGCN trained on the interaction graph, then frozen; and the
GLLM head's scores over the frozen graph's item tokens, which both models rank all items by.

Both models keep the graph (``FastLightGCN``) as a submodule so that stage 1 trains through
RecBole's pairwise batches, and its final embeddings as buffers that every later stage reads.
"""

import torch

from recbole_llm.model.fastlightgcn import FastLightGCN


class PretrainedGraphMixin:
    """``self.graph`` and its frozen user/item embeddings; expects ``self.gllm_head`` and ``self.item_tokens``."""

    def _build_graph(self, config, dataset):
        """Create the stage-1 LightGCN and the (zero until frozen) buffers; returns the embedding size."""
        self.graph = FastLightGCN(config, dataset)
        d = config["embedding_size"]
        self.register_buffer("user_graph_embedding", torch.zeros(self.n_users, d))
        self.register_buffer("item_graph_embedding", torch.zeros(self.n_items, d))
        return d

    @torch.no_grad()
    def freeze_graph(self):
        """End of stage 1: keep LightGCN's final embeddings as fixed inputs of the projectors."""
        self.graph.eval()
        users, items = self.graph.forward()
        self.user_graph_embedding.copy_(users)
        self.item_graph_embedding.copy_(items)
        self.graph.requires_grad_(False)

    @torch.no_grad()
    def init_head_from_item_tokens(self):
        """``gllm_head: item_tokens``: start the head from the item tokens of the frozen graph."""
        self.gllm_head.init_from_item_tokens(self.item_tokens(torch.arange(self.n_items, device=self.device)))

    def logits(self, hidden):
        """Scores of every item from LLM hidden states through the GLLM head (``tied``: over all item tokens)."""
        all_tokens = self.item_tokens(torch.arange(self.n_items, device=hidden.device)) if self.gllm_head.mode == "tied" else None
        return self.gllm_head(hidden, all_tokens)

    def predict(self, interaction):
        """The scores of the interaction's items: their columns of ``full_sort_predict``."""
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID].unsqueeze(1)).squeeze(1)
