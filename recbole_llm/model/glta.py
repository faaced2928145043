"""GLTA: Graph-Language Token Alignment.

C. Wang, H. Peng, L. Yang, M. Yang, P. Yu, X. Liu, Z. Liu. "Training Large Recommendation Models
via Graph-Language Token Alignment". WWW 2025 Companion, arXiv 2502.18757.

Users and items of the interaction graph become soft tokens in a frozen LLM's input space; the
GLLM head turns the LLM's hidden state at an output slot into logits over the whole catalogue, so
every output is a real item and full ranking is one matrix product. Three stages, run by
``GLTATrainer`` one after another, each checkpointed and resumable:

1. Graph pretraining: LightGCN with BPR on the training interactions (``FastLightGCN``), or the
   embeddings of an existing LightGCN checkpoint (``graph_checkpoint``); frozen afterwards. Beyond
   the paper, ``graph_model: TextLightGCN`` and ``graph_loss: softmax`` (``model/graph_stage.py``).
2. Item-text alignment: prompts hold m item descriptions in a random order and the m item tokens
   P_i(E_i) in another; output slot t must name the item whose description stands t-th. Trains the
   item projector, the output slots and the GLLM head.
3. User-item alignment: prompts hold the user token P_u(E_u), item tokens of the user's training
   items, optional profile and predicted-interest text; k held-out training items (resampled every
   epoch, never valid/test items) are the targets at the k output slots. Trains the user projector,
   the output slots, the GLLM head and, with ``lora_r > 0``, LoRA adapters.

Inference reads the logits at the first output slot of the stage-3 prompt ("first-logit").

Beyond the paper, each a config key that ``properties/glta-paper.yaml`` turns off (the paper's path,
run on the default CPU backbone, ranked below the LightGCN it starts from; results/ml-100k.md):

- ``score_fusion: residual``: final scores = scale · stage 1's e_u·E_iᵀ + gate · the GLLM logits,
  the gate starting at 0; stage 3 validates once before its first epoch, so stage 1's ranking is a
  candidate for the best checkpoint (``model/graph_stage.py``).
- ``lm_holdout_ratio``: stage 3's targets are interactions held out of the graph the LM reads, and
  its prompt history is the user's other training items (``model/graph_stage.py``).
- ``id_control``: the id control, GLTA with text removed everywhere: stage 1 on IDs, no stage 2 (it
  reads descriptions), no profile or prediction texts.
- ``max_history: 20``: prompts show up to 20 training items (the paper states no number). 40 items
  validated no better on the text-aware defaults, for more seconds an epoch (benchmarks/notes/ml-100k.md).

Switches measured as no better were removed (item text in the item tokens, stage 3 training the
item side, history items in words, an MLP projector, a LoRA rate of its own, a normalised head
input); their rows stay in benchmarks/notes/, with the commit whose code ran them.

Choices where the paper is silent (each a config key):

- Output slots are learned soft tokens, one per slot position (``output_slots``); the paper only
  says "output slots".
- Descriptions are numbered ("1. ...; 2. ...") so that slot t can refer to the t-th one.
- Item tokens stand side by side, with no text between them.
- Every loss is a full-softmax cross-entropy over all items at each supervised slot.
- Stage 3 targets are a random set of k training items; the remaining training items (a random
  subset of at most ``max_history``) form the history. At inference the history is a fixed random
  subset of at most ``max_history`` training items per user.
- The prompts use the backbone's own chat format (SmolLM2: ChatML) with the paper's instructions;
  the paper's LLaMA-2 ``[INST] <<SYS>>`` wrapper is what a LLaMA-2 chat template renders.
- ``gllm_head``: ``tied`` (default) computes logits against P_i(E_i) at every step (in stage 3,
  where P_i is frozen, only its per-item bias trains); ``item_tokens`` initialises a Linear head
  from P_i(E_i) before stage 2; ``linear`` starts fresh. The spec asks which works better: ``tied``
  ranked highest on ml-100k, over 3 seeds, so it is the default (benchmarks/notes/ml-100k.md,
  "GLTA").
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbole_llm.data.item_text import item_descriptions
from recbole_llm.data.user_text import user_texts
from recbole_llm.llm import PromptBuilder, PromptTemplate, Soft, hidden_at, llm_hidden_size, load_backbone
from recbole_llm.model.graph_stage import GraphLMRecommender, latest
from recbole_llm.model.item_head import GLLMHead


class GLTA(GraphLMRecommender):

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.item_alignment_items = config["item_alignment_items"]
        self.user_alignment_targets = config["user_alignment_targets"]
        self.max_history = config["max_history"]
        self.lora = (config["lora_r"] or 0) > 0

        # Stage 1: the graph, and its frozen final embeddings once trained. With lm_holdout_ratio a
        # second LightGCN, trained without the held-out interactions, feeds the language model, whose
        # stage 3 then learns to predict exactly what that graph did not see.
        d = self._build_graph(config, dataset)
        self._build_holdout_graph(config, dataset)
        # Where text enters beside stage 1: stage 2 reads item descriptions, the prompts' optional user
        # texts are generated from them. The id control (id_control) has none of them.
        self.item_alignment = self.reads_text(config, "item_alignment")
        self.use_profile = self.reads_text(config, "use_profile")
        self.use_prediction = self.reads_text(config, "use_prediction")

        # The language model and what is trained around it.
        self.llm, self.tokenizer = load_backbone(config)
        token_size = self.llm.get_input_embeddings().embedding_dim
        self.item_projector = nn.Linear(d, token_size)
        self.user_projector = nn.Linear(d, token_size)
        n_slots = max(self.item_alignment_items, self.user_alignment_targets)
        self.output_slots = nn.Parameter(torch.randn(n_slots, token_size) * self.llm.get_input_embeddings().weight.std())
        self.gllm_head = GLLMHead(llm_hidden_size(self.llm), self.n_items, config["gllm_head"])

        self.item_template = PromptTemplate(self.tokenizer, config["item_alignment_system"], config["item_alignment_prompt"],
                                            placeholders={"descriptions", "item_tokens"},
                                            keys=("item_alignment_system", "item_alignment_prompt"))
        self.user_template = PromptTemplate(self.tokenizer, config["user_alignment_system"], config["user_alignment_prompt"],
                                            placeholders={"user_token", "item_tokens", "profile", "prediction"},
                                            keys=("user_alignment_system", "user_alignment_prompt"))
        self.prompts = PromptBuilder(self.tokenizer, self.llm.get_input_embeddings(), add_bos=not self.user_template.adds_bos)

        self.descriptions = item_descriptions(dataset) if self.item_alignment or self.use_profile or self.use_prediction else None
        self.seed = config["seed"]
        self._refresh_inference(dataset)
        self.profiles = user_texts(config, dataset, self.history, self.descriptions, "profile") if self.use_profile else None
        self.predictions = (user_texts(config, dataset, self.history, self.descriptions, "prediction")
                            if self.use_prediction else None)

    INFERENCE_STATE = ("history", "inference_history")

    def _refresh_inference(self, dataset):
        """Each user's items (``history``) and the fixed prompt history at inference, from ``dataset``'s
        interactions (the training split; under ``folded_in``, the validation split after it).

        On ordered data (order: TO) a prompt shows the user's most recent items, oldest first, since
        leave-one-out asks what comes next; otherwise a fixed random subset (seeded), the same in every evaluation.
        """
        history = dataset.inter_matrix(form="csr").astype(np.float32)
        self.history = [history.indices[history.indptr[u]:history.indptr[u + 1]] for u in range(self.n_users)]
        if self.ordered:
            self.inference_history = [latest(h, self.max_history) for h in self.sequences]
        else:
            rng = np.random.default_rng(self.seed)
            self.inference_history = [h if len(h) <= self.max_history else rng.choice(h, self.max_history, replace=False)
                                      for h in self.history]

    # ----- parameters of each stage -------------------------------------------------------------

    def item_alignment_parameters(self):
        return [*self.item_projector.parameters(), self.output_slots, *self.gllm_head.parameters()]

    def user_alignment_parameters(self):
        """Stage 3's parameters: the item projector stays as stage 2 left it, as in the paper."""
        params = [*self.user_projector.parameters(), self.output_slots]
        params += list(self.gllm_head.parameters()) + self.fusion_parameters()
        return params + [p for p in self.llm.parameters() if p.requires_grad]

    # ----- prompts ------------------------------------------------------------------------------

    def item_tokens(self, items):
        return self.item_projector(self.item_graph_embedding[items.to(self.device)])

    def _slots(self, count):
        return Soft(self.output_slots[:count], name="out")

    def user_prompts(self, users, histories):
        """Stage-3 prompts: user token, history items, optional texts, ``user_alignment_targets`` slots."""
        user_tokens = self.user_projector(self.user_graph_embedding[users])
        prompts = []
        for row, (user, history) in enumerate(zip(users.tolist(), histories)):
            history = torch.as_tensor(history, dtype=torch.long, device=self.device)
            profile = f" User tags: {self.profiles[user]}" if self.profiles else ""
            prediction = f" User's potential interest: {self.predictions[user]}" if self.predictions else ""
            prompt = self.user_template.fill(user_token=Soft(user_tokens[row:row + 1]),
                                             item_tokens=Soft(self.item_tokens(history)),
                                             profile=profile, prediction=prediction)
            prompts.append(prompt + [self._slots(self.user_alignment_targets)])
        return self.prompts.build(prompts)

    def slot_hidden(self, batch):
        return hidden_at(self.llm, batch, "out")

    # ----- stage losses -------------------------------------------------------------------------

    def item_alignment_loss(self, interaction):
        """Stage 2: groups of m items; slot t must name the item whose description stands t-th."""
        m = self.item_alignment_items
        items = interaction[self.ITEM_ID]
        items = items[: len(items) // m * m].view(-1, m)  # description order = the (shuffled) batch order
        prompts = []
        for group in items:
            token_order = group[torch.randperm(m, device=group.device)]
            descriptions = "; ".join(f"{t + 1}. {self.descriptions[i]}" for t, i in enumerate(group.tolist()))
            prompts.append(self.item_template.fill(descriptions=descriptions, item_tokens=Soft(self.item_tokens(token_order)))
                           + [self._slots(m)])
        logits = self.logits(self.slot_hidden(self.prompts.build(prompts)))
        return F.cross_entropy(logits.reshape(-1, self.n_items), items.reshape(-1))

    def user_alignment_loss(self, interaction):
        """Stage 3: k training items held out of the prompt are the targets at the k slots.

        With ``lm_holdout_ratio`` the targets are drawn from the user's held-out interactions and the
        prompt shows the others; otherwise both come from one shuffle of the whole history. On ordered
        data the held-out items are the most recent ones: the targets are the first k of them, and the
        prompt shows the ``max_history`` items just before them, oldest first.
        """
        users = interaction[self.USER_ID]
        k = self.user_alignment_targets
        histories, targets = [], torch.full((len(users), k), -100, dtype=torch.long)
        for row, user in enumerate(users.tolist()):
            if self.lm_targets is None:
                items = self.history[user]
                order = torch.randperm(len(items)).numpy()
                # Keep at least one item in the prompt when the user has more than one.
                n_targets = min(k, max(len(items) - 1, 1))
                chosen, shown = items[order[:n_targets]], items[order[n_targets:n_targets + self.max_history]]
            elif self.ordered:
                kept = self.lm_history[user]
                chosen, shown = self.lm_targets[user][:k], latest(kept, self.max_history)
            else:
                held, kept = self.lm_targets[user], self.lm_history[user]
                chosen = held[torch.randperm(len(held)).numpy()[:k]]
                shown = kept[torch.randperm(len(kept)).numpy()[:self.max_history]]
            targets[row, :len(chosen)] = torch.as_tensor(chosen)
            histories.append(shown)
        logits = self.fused_logits(users, self.logits(self.slot_hidden(self.user_prompts(users, histories))), training=True)
        return F.cross_entropy(logits.reshape(-1, self.n_items), targets.to(logits.device).reshape(-1), ignore_index=-100)

    def calculate_loss(self, interaction):
        """The graph stage's ranking loss (``graph_loss``): what RecBole's plain Trainer would train."""
        return self.graph.calculate_loss(interaction)

    # ----- scoring ------------------------------------------------------------------------------

    def lm_logits(self, users):
        """The GLLM head's scores of every item at the first output slot, for ``users``' inference prompts."""
        batch = self.user_prompts(users, [self.inference_history[u] for u in users.tolist()])
        return self.logits(self.slot_hidden(batch)[:, 0])
