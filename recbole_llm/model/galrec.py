"""GAL-Rec: graph-aware learning for language-model-driven recommendation.

Z. Guan, L. Wu, H. Zhao, M. He, J. Fan. "Enhancing Collaborative Semantics of Language
Model-Driven Recommendations via Graph-Aware Learning". arXiv 2406.13235.

The LM is taught the aggregation a GNN does: a node's prompt carries its multi-hop neighbourhood,
and contrastive losses pull the LM's representation of the 2-hop context towards the node's 0-hop
and 1-hop views, with a MoCo-style queue supplying many negatives despite small LM batches. The
paper's four components, as built here:

1. External embeddings: a user's soft token is P_u(E_u), an item's P_i(E_i) + P_t(text_i), where
   E are LightGCN embeddings pretrained on the training interactions (stage 1, shared with GLTA:
   ``FastLightGCN`` or ``graph_checkpoint``, frozen afterwards) and text_i is the frozen mean-pooled
   embedding of the item's description by the same backbone (``text_embeddings``); every
   projector is a Linear without bias into the LM's input space (a shared offset, which training
   grew until every node's token looked alike, would collapse the contrastive views).
2. Task-specific tokens: learned soft tokens [USER], [ITEM], [HOP1], [HOP2] mark what follows, and
   an [OUT] token ends every prompt; its last hidden state is read.
3. Prompts: for a user, 0-hop = [USER] u; 1-hop = that + [HOP1] and the tokens of up to ``n_hop1``
   items of u; 2-hop = that + [HOP2] and the tokens of ``n_hop2`` users reached from those items.
   Symmetrically for an item ([ITEM] i, its users, their items). Neighbours come from the training
   split only (the dataset the model receives) and are resampled every batch.
4. Graph-aware learning: r^k = projection head(pooled LM states of the k-hop prompt). Loss
   L = L0 + λ1·L1 + λ2·L2 + λ3·L3 + λ4·||Θ||² with L0 the cross-entropy over all items of the GLLM
   head (GLTA's) on the user's 2-hop prompt, its target a training item held out of that prompt;
   L1 = InfoNCE(user r^2, r^0), L2 = InfoNCE(user r^2, r^1), L3 = the mean of InfoNCE(item r^2, r^0)
   and InfoNCE(item r^2, r^1). Keys r^0, r^1 come from a momentum (EMA) key encoder without
   gradient; negatives are the batch's other keys plus a FIFO queue of earlier keys, one queue per
   (side, hop).

Full ranking: the GLLM head's logits at [OUT] of each user's 2-hop prompt built from a fixed
neighbour sample of the training graph, one LM forward per batch of users.

Choices where the paper (not public in full) and the spec are silent, each a config key where
it can vary:

- k-hop prompts are cumulative (the node's own token and hops 1..k), as a k-layer GNN's receptive
  field includes the node itself; the 2-hop prompt is the user's full context for L0 too.
- A hop's representation averages the LM's last hidden states from the node's [USER]/[ITEM] mark to
  the end of the prompt. The state at [OUT] alone was tried first: with the tiny random test LM the
  [OUT] states of different users were nearly identical, leaving InfoNCE no signal
  (benchmarks/notes/ml-100k.md, "Figures behind the code's choices").
  Then ``projection_head``: Linear-ReLU-Linear to ``projection_size``, L2-normalised. L0 always
  reads the [OUT] state, like GLTA's output slot.
- 1-hop neighbours: up to ``n_hop1`` distinct neighbours, uniformly without replacement (fewer when
  the node has fewer). 2-hop neighbours: ``n_hop2`` two-step random walks through the sampled 1-hop
  neighbours (so they may repeat); a walk back to the centre node is dropped.
- The L0 target is one uniformly drawn training item of the user, removed from its 1-hop list; the
  items of L3 are the batch's L0 targets.
- On ordered data with held-out targets (``lm_holdout_ratio``, ``ordered_context``), L0's target is
  the held-out item that follows the user's kept items.
- ``lm_objective: next_item`` (ordered data; the default ``target`` is the objective above) trains L0 as
  SASRec trains: each step cuts each user's training sequence at a fresh random position, the items
  before the cut are the 1-hop context, and every context item's state and [OUT] predict what follows
  them, in one forward. User prompts then carry no token of the user, whose stage-1 embedding has seen
  most cuts' targets; ``_next_item_l0`` says what may reach a prompt and where stage 1's score is fused.
  ``next_item_cut: last`` cuts every sequence before its last training item instead: one forward then
  supervises the user's latest ``n_hop1`` + 1 positions, the whole sequence when ``n_hop1`` covers it (as
  SASRec's training sequences end at each position), and [OUT] always predicts what follows the latest
  items, as it does at inference; ``random`` (the default) shows [OUT] every prefix over the epochs.
  ``lm_objective: auto`` is ``next_item`` on ordered data (``order: TO`` with ``ordered_context``) and
  ``target`` elsewhere, so one property file serves both protocols.
- Negatives of each InfoNCE: the other keys of the batch (a key of the same node is masked) plus,
  with ``use_queue``, the queue's filled part; the queue never holds the current batch's keys.
  ``use_queue: False`` leaves in-batch negatives only. Keys of the same node from earlier batches
  may sit in the queue, as in MoCo.
- The key encoder is an EMA copy (``momentum``) of everything trained on the way to a
  representation: projectors, task tokens and projection head (``GraphTokenEncoder``), with the
  same frozen LM. An EMA copy of the projection head alone was tried first: the soft tokens then
  change at the learning rate, queued keys come from an outdated token space, and training found
  the trivial way out (every current view identical and far from the queue, InfoNCE stuck at
  log(batch)). It is updated at the start of every training step, before it computes that step's
  keys (MoCo's order). LoRA adapters, if any, are shared by both encoders.
- λ4·||Θ||² is an explicit L2 term in the loss (sum of squares of all trainable parameters), as the
  paper writes it; RecBole's ``weight_decay`` stays available on top.
- ``use_l1``, ``use_l2``, ``use_l3`` switch their term on; the defaults train L0 alone, on three
  times the users per epoch (``users_per_epoch``) for the same seconds, which validated higher on
  amazon-beauty than the paper's loss (benchmarks/notes/amazon-beauty.md);
  ``properties/galrec-paper.yaml`` turns all three on. Ablations: ``use_queue: False``; with
  ``use_hop2: False`` the top view is the 1-hop prompt (for L0, L1 and L3), L2 has no 2-hop view
  and is dropped, and L3 is InfoNCE(item r^1, r^0) alone.
- λ1..λ3 default to 1 (L0 and the InfoNCE terms have comparable scales: log of the catalogue and
  of the negatives); they are untuned.
- ``gllm_head``: as GLTA's (``item_tokens`` initialises the head from the item tokens after the
  graph stage).
- At inference each user's neighbours are one fixed sample (seeded by ``seed``), so scores do not
  change between evaluations or after a reload.
- Training sub-samples ``users_per_epoch`` users per epoch (a fresh random subset each epoch) so a
  CPU epoch stays short; ``~`` takes all.
- ``id_control: True`` is the id control: stage 1 on IDs with the same loss and item tokens without
  their text term (``model/graph_stage.py``).
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn

from recbole_llm.data.neighbours import NeighbourSampler
from recbole_llm.errors import ConfigValueError
from recbole_llm.llm import PromptBuilder, PromptTemplate, Soft, hidden_at, llm_hidden_size, load_backbone
from recbole_llm.model.graph_stage import GraphLMRecommender, latest
from recbole_llm.model.item_head import GLLMHead

TASK_TOKENS = ("user", "item", "hop1", "hop2", "out")
LM_OBJECTIVES = ("target", "next_item", "auto")
NEXT_ITEM_CUTS = ("random", "last")
QUEUES = ("user_hop0", "user_hop1", "item_hop0", "item_hop1")


class KeyQueue(nn.Module):
    """A MoCo FIFO queue of ``size`` keys: ``push`` overwrites the oldest, ``keys()`` returns the filled part."""

    def __init__(self, size, dim):
        super().__init__()
        self.size = size
        self.register_buffer("buffer", torch.zeros(size, dim))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def keys(self):
        # A copy: the loss keeps these for its backward, and ``push`` overwrites the buffer before that.
        return self.buffer[: int(self.filled)].clone()

    @torch.no_grad()
    def push(self, keys):
        keys = keys.detach()[-self.size:]
        slots = (self.pointer + torch.arange(len(keys), device=keys.device)) % self.size
        self.buffer[slots] = keys
        self.pointer.copy_((self.pointer + len(keys)) % self.size)
        self.filled.clamp_(max=self.size - len(keys)).add_(len(keys))


class GraphTokenEncoder(nn.Module):
    """The trained path from a node to its representation, around the frozen LM.

    Projectors turn graph (and text) embeddings into soft tokens, task tokens mark the prompt's
    parts, the projection head maps a pooled LM state to the contrastive space. The key encoder is
    an EMA copy of all of it, so that queued keys stay comparable across steps (MoCo's reason).
    """

    def __init__(self, graph_size, text_size, token_size, hidden_size, projection_size, token_std):
        super().__init__()
        # No bias: a shared offset makes every node's token alike, and training drove it to swamp the
        # node-specific part; tokens are linear in the graph and text embeddings instead.
        self.user_projector = nn.Linear(graph_size, token_size, bias=False)
        self.item_projector = nn.Linear(graph_size, token_size, bias=False)
        self.text_projector = nn.Linear(text_size, token_size, bias=False) if text_size else None
        self.task_tokens = nn.Parameter(torch.randn(len(TASK_TOKENS), token_size) * token_std)
        self.projection_head = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(),
                                             nn.Linear(hidden_size, projection_size))

    def marks(self):
        return dict(zip(TASK_TOKENS, self.task_tokens.unsqueeze(1)))


def neighbour_samplers(interactions):
    """(user to items, item to users) ``NeighbourSampler``s of a CSR user-item matrix."""
    return NeighbourSampler(interactions), NeighbourSampler(interactions.T.tocsr())


class GALRec(GraphLMRecommender):

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.n_hop1 = config["n_hop1"]
        self.n_hop2 = config["n_hop2"]
        self.tau = config["tau"]
        self.momentum = config["momentum"]
        self.lambda1, self.lambda2, self.lambda3, self.lambda4 = (config[f"lambda{k}"] for k in (1, 2, 3, 4))
        self.use_l1 = config["use_l1"]
        self.use_l2 = config["use_l2"]
        self.use_l3 = config["use_l3"]
        self.use_queue = config["use_queue"]
        self.use_hop2 = config["use_hop2"]
        self.lora = (config["lora_r"] or 0) > 0
        self.top_hop = 2 if self.use_hop2 else 1
        self.lm_objective = config["lm_objective"] or "target"
        if self.lm_objective not in LM_OBJECTIVES:
            raise ConfigValueError(f"lm_objective={self.lm_objective!r} is not an objective of GAL-Rec's "
                                   f"language-model stage. Fix: set lm_objective to one of {', '.join(LM_OBJECTIVES)}.")
        self.next_item_cut = config["next_item_cut"] or "random"
        if self.next_item_cut not in NEXT_ITEM_CUTS:
            raise ConfigValueError(f"next_item_cut={self.next_item_cut!r} is not a cut of GAL-Rec's training sequences. "
                                   f"Fix: set next_item_cut to one of {', '.join(NEXT_ITEM_CUTS)}.")

        # Stage 1: the graph, and its frozen final embeddings once trained.
        d = self._build_graph(config, dataset)
        held = self._build_holdout_graph(config, dataset)
        if self.lm_objective == "auto":  # what comes next where there is an order to follow (self.ordered)
            self.lm_objective = "next_item" if self.ordered else "target"
        # next_item: a user is their sequence, as in SASRec (see ``_next_item_l0``).
        self.user_token_in_prompt = self.lm_objective == "target"
        text_size = self._build_item_text(config, dataset)

        # The language model and what is trained around it.
        self.llm, self.tokenizer = load_backbone(config)
        input_embeddings = self.llm.get_input_embeddings()
        token_size = input_embeddings.embedding_dim
        hidden = llm_hidden_size(self.llm)
        self.encoder = GraphTokenEncoder(d, text_size, token_size, hidden, config["projection_size"],
                                         input_embeddings.weight.std().item())
        self.key_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.queues = nn.ModuleDict({name: KeyQueue(config["queue_size"], config["projection_size"]) for name in QUEUES})
        self.gllm_head = GLLMHead(hidden, self.n_items, config["gllm_head"])

        self.template = PromptTemplate(self.tokenizer, config["prompt_system"], "{context}", placeholders={"context"},
                                       keys=("prompt_system",))
        self.prompts = PromptBuilder(self.tokenizer, input_embeddings, add_bos=not self.template.adds_bos)

        # Neighbours: the training split's interactions only (``_refresh_inference``, below). With
        # lm_holdout_ratio, training prompts come from the interactions that are not held out and L0's
        # targets from those that are.
        self.held_items = None
        if self.holdout_graph is not None:
            self.train_samplers = neighbour_samplers(self.holdout_dataset.inter_matrix(form="csr"))
            self.held_items = NeighbourSampler(dataset.copy(dataset.inter_feat[held]).inter_matrix(form="csr"))
        # On ordered data (order: TO) a user's 1-hop context is their latest training items, oldest first,
        # since leave-one-out asks what comes next; the training targets are the items that follow.
        self.generator = torch.Generator().manual_seed(config["seed"])
        self.seed = config["seed"]
        self._refresh_inference(dataset)
        if self.lm_objective == "next_item":
            self._check_next_item()

    INFERENCE_STATE = ("inference_context", "user_items", "item_users")

    def _inference_context(self):
        """Every user's fixed context at inference (``sample_context``, seeded): on ordered data the latest items."""
        users = torch.arange(self.n_users)
        hop1 = self.latest_items(self.sequences, users) if self.ordered else None
        return self.sample_context("user", users, torch.Generator().manual_seed(self.seed), hop1=hop1)

    def _refresh_inference(self, dataset):
        """Neighbours and every user's inference context from ``dataset``'s interactions: the training split,
        or under ``folded_in`` the validation split after it (ordered contexts then end at each user's latest item)."""
        self.user_items, self.item_users = neighbour_samplers(dataset.inter_matrix(form="csr"))
        self.inference_context = self._inference_context()

    def _check_next_item(self):
        """``lm_objective: next_item`` needs an order to follow and, with a fusion trained on stage 1's scores,
        targets stage 1 has not seen; and it leaves the user's own token out, which L1 compares against."""
        if not self.ordered:
            raise ConfigValueError("lm_objective=next_item predicts what follows in each user's sequence, and this "
                                   "run's training interactions are not in time order. Fix: set eval_args order: TO "
                                   "with ordered_context: True, or lm_objective: target.")
        if self.held_items is None and not self.score_fusion.lm_alone(training=True):
            raise ConfigValueError(f"lm_objective=next_item with score_fusion={self.score_fusion.name} learns the "
                                   "fusion on held-out targets, and lm_holdout_ratio holds none out. Fix: set "
                                   "lm_holdout_ratio above 0, or score_fusion: validated or none.")
        if self.use_l1:
            raise ConfigValueError("use_l1 aligns a user's prompt with the user's own token, which "
                                   "lm_objective=next_item leaves out of user prompts. Fix: set use_l1: False, "
                                   "or lm_objective: target.")

    # ----- parameters ---------------------------------------------------------------------------

    def graph_aware_parameters(self):
        """What the joint loss trains: projectors, task tokens, projection head, GLLM head, LoRA if any."""
        return [p for name, p in self.named_parameters() if p.requires_grad and not name.startswith("graph.")]

    # ----- external embeddings and prompts ------------------------------------------------------

    def user_tokens(self, users, encoder=None):
        encoder = encoder or self.encoder
        return encoder.user_projector(self.user_graph_embedding[users.to(self.device)])

    def item_tokens(self, items, encoder=None):
        encoder = encoder or self.encoder
        return self.item_token(items, encoder.item_projector, encoder.text_projector)

    def _sides(self, side, training=False):
        """(node tokens, 1-hop tokens, 2-hop tokens, sampler to 1-hop, sampler back) for ``side``.

        ``training`` with held-out targets samples from the interactions that are not held out.
        """
        user_items, item_users = self.train_samplers if training and self.held_items is not None else (
            self.user_items, self.item_users)
        if side == "user":
            return self.user_tokens, self.item_tokens, self.user_tokens, user_items, item_users
        return self.item_tokens, self.user_tokens, self.item_tokens, item_users, user_items

    def sample_context(self, side, nodes, generator, exclude=None, training=False, hop1=None):
        """(hop-1 ids, mask), (hop-2 ids, mask) of ``nodes`` on the training graph; ids on the CPU.

        ``hop1`` (ids, mask) replaces the random 1-hop sample (ordered data: ``latest_items``)."""
        *_, near, back = self._sides(side, training)
        nodes = nodes.cpu()
        if hop1 is None:
            hop1 = near.sample(nodes, self.n_hop1, generator, None if exclude is None else exclude.cpu())
        hop2 = back.walk(*hop1, self.n_hop2, generator, centre=nodes)
        return hop1, hop2

    def latest_items(self, sequences, users, ends=None):
        """Each user's up to ``n_hop1`` items of ``sequences`` (time order) before position ``ends`` (default:
        the end), oldest first, as 1-hop (ids, mask) [B, n_hop1]."""
        ids = torch.zeros(len(users), self.n_hop1, dtype=torch.long)
        mask = torch.zeros(len(users), self.n_hop1, dtype=torch.bool)
        for row, user in enumerate(users.tolist()):
            recent = latest(sequences[user], self.n_hop1, None if ends is None else int(ends[row]))
            ids[row, :len(recent)] = torch.as_tensor(recent, dtype=torch.long)
            mask[row, :len(recent)] = True
        return ids, mask

    def _ordered_targets(self, users):
        """Ordered data: (targets, 1-hop context) of a training batch: a position t of each user's training
        sequence, its item the target and the items before it the context. With held-out targets, t is the
        first held-out position, which follows the user's latest kept items; otherwise any position t >= 1
        (SASRec's many prefixes)."""
        if self.held_items is not None:
            ends = torch.tensor([len(self.lm_history[u]) for u in users.tolist()])
        else:
            ends = self._cut_points(users)
        targets = torch.tensor([int(self.sequences[u][t]) for u, t in zip(users.tolist(), ends.tolist())])
        return targets, self.latest_items(self.sequences, users, ends)

    def _cut_points(self, users):
        """A position t of each user's training sequence (0 for a sequence of one item): with ``next_item_cut:
        random`` uniformly in 1..n-1, a fresh draw each step; with ``last`` the last one, n-1."""
        lengths = torch.tensor([len(self.sequences[u]) for u in users.tolist()])
        if self.next_item_cut == "last":
            ends = lengths - 1
        else:
            ends = (torch.rand(len(users), generator=self.generator) * (lengths - 1).clamp(min=0)).long() + 1
        return torch.where(lengths > 1, ends, torch.zeros_like(ends))

    def context_prompts(self, side, nodes, context, hops, encoder=None):
        """The ``hops``-hop prompts (0, 1 or 2) of ``nodes``, batched, each ending in the [OUT] token."""
        encoder = encoder or self.encoder
        node_tokens, hop1_tokens, hop2_tokens, *_ = self._sides(side)
        (hop1, mask1), (hop2, mask2) = context
        marks = encoder.marks()
        nodes_t = node_tokens(nodes, encoder)
        near = hop1_tokens(hop1, encoder) if hops >= 1 else None
        far = hop2_tokens(hop2, encoder) if hops >= 2 else None
        prompts = []
        for row in range(len(nodes)):
            segments = [Soft(marks[side], name="mark")]
            if side == "item" or self.user_token_in_prompt:
                segments.append(Soft(nodes_t[row:row + 1]))
            if hops >= 1:
                segments += [Soft(marks["hop1"], name="hop1"), Soft(near[row][mask1[row].to(near.device)])]
            if hops >= 2:
                segments += [Soft(marks["hop2"]), Soft(far[row][mask2[row].to(far.device)])]
            prompts.append(self.template.fill(context=segments) + [Soft(marks["out"], name="out")])
        return self.prompts.build(prompts)

    def context_states(self, side, nodes, context, hops, encoder=None, hop1_states=False):
        """One LM forward of each node's ``hops``-hop prompt: (state at [OUT], pooled representation), each [B, hidden],
        and with ``hop1_states`` the states at the 1-hop tokens [B, n_hop1, hidden] (rows past a prompt's own
        1-hop tokens are not theirs: read them through the context's mask).

        The representation averages the states from the node's [USER]/[ITEM] mark to the end of the prompt
        (its graph tokens and what follows them, not the instruction before them, which is the same for
        every prompt).
        """
        batch = self.context_prompts(side, nodes, context, hops, encoder)
        length = batch.inputs_embeds.shape[1]
        positions = torch.arange(length, device=batch.attention_mask.device)
        batch.positions["all"] = positions.expand(len(nodes), length)
        states = hidden_at(self.llm, batch, "all").float()  # the heads stay float32 under any llm_dtype
        rows = torch.arange(len(nodes), device=states.device)
        out = states[rows, batch.positions["out"][:, 0]]
        graph_part = (positions.unsqueeze(0) >= batch.positions["mark"]).unsqueeze(-1).to(states.dtype)
        pooled = (states * graph_part).sum(1) / graph_part.sum(1)
        if not hop1_states:
            return out, pooled
        # The 1-hop tokens follow the [HOP1] mark, in the context's order.
        slots = (batch.positions["hop1"] + 1 + torch.arange(self.n_hop1, device=positions.device)).clamp(max=length - 1)
        return out, pooled, states[rows.unsqueeze(1), slots]

    # ----- graph-aware learning -----------------------------------------------------------------

    @torch.no_grad()
    def _momentum_update(self):
        for online, key in zip(self.encoder.parameters(), self.key_encoder.parameters()):
            key.mul_(self.momentum).add_(online.detach(), alpha=1 - self.momentum)

    @torch.no_grad()
    def _keys(self, side, nodes, context, hops):
        """Key-encoder keys of the ``hops``-hop views: no gradient reaches anything through them."""
        pooled = self.context_states(side, nodes, context, hops, self.key_encoder)[1]
        return F.normalize(self.key_encoder.projection_head(pooled), dim=-1)

    def _info_nce(self, query, key, nodes, queue):
        """InfoNCE of ``query`` [B, p] against its own ``key``; other nodes' keys (and the queue) are negatives."""
        logits = query @ key.t()
        same_node = nodes.unsqueeze(0) == nodes.unsqueeze(1)
        logits = logits.masked_fill(same_node & ~torch.eye(len(nodes), dtype=torch.bool, device=logits.device), float("-inf"))
        if self.use_queue:
            logits = torch.cat([logits, query @ self.queues[queue].keys().t()], dim=1)
        return F.cross_entropy(logits / self.tau, torch.arange(len(nodes), device=logits.device))

    def _alignment(self, side, nodes, context, pooled, pairs, pushes):
        """InfoNCE of the top view's query with each key view in ``pairs`` (hops); keys queued in ``pushes``."""
        query = F.normalize(self.encoder.projection_head(pooled), dim=-1)
        losses = []
        for hops in pairs:
            key = self._keys(side, nodes, context, hops)
            losses.append(self._info_nce(query, key, nodes.to(key.device), f"{side}_hop{hops}"))
            pushes.append((f"{side}_hop{hops}", key))
        return sum(losses) / len(losses)

    def _target_l0(self, users):
        """``lm_objective: target``: (targets, context, L0, pooled representation) of one target per user, read at
        [OUT] and scored through the fusion."""
        if self.ordered:
            targets, hop1 = self._ordered_targets(users)
            context = self.sample_context("user", users, self.generator, training=True, hop1=hop1)
        elif self.held_items is None:
            targets = self.user_items.pick(users.cpu(), self.generator)
            context = self.sample_context("user", users, self.generator, exclude=targets)
        else:
            targets = self.held_items.pick(users.cpu(), self.generator)
            context = self.sample_context("user", users, self.generator, training=True)
        out, pooled = self.context_states("user", users, context, self.top_hop)
        logits = self.fused_logits(users, self.logits(out), training=True)
        return targets, context, F.cross_entropy(logits, targets.to(out.device)), pooled

    def _next_item_l0(self, users):
        """``lm_objective: next_item``: (targets, context, L0, pooled representation) of one prefix per user.

        Each step cuts each user's training sequence at a fresh random position t (``_cut_points``), so over
        the epochs the LM sees every prefix, not only the one before the held-out items. The prompt's 1-hop
        context is the up to ``n_hop1`` items before t, oldest first: under causal attention the state at a
        context item has read exactly the items up to it, so it predicts the next one (the last context item
        predicts the item at t), and [OUT], which has also read the 2-hop users, predicts the item at t:
        ``min(t, n_hop1) + 1`` supervised positions a prompt, all from one forward through the GLLM head, as
        SASRec supervises every position. L0 is the mean cross-entropy over all supervised positions of the
        batch (each position weighs the same, as in SASRec; a user with a longer context weighs more).

        Nothing at or after t reaches the prompt: the 1-hop items are the prefix; the 2-hop users are other
        users reached from them on the graph of the kept interactions (the centre user is dropped), whose
        own interactions are the collaborative evidence inference reads too; the user's own token is left
        out of user prompts, in training and at inference, because stage 1's embedding of the user was
        trained on all of the user's kept interactions, the targets of most prefixes among them. Stage 1's
        score, trained on the same interactions, is fused only at positions whose target stage 1 has not
        seen (the held-out interactions, ``lm_holdout_ratio``), with the history masked as in the target
        objective; elsewhere the LM's logits are scored alone, so the fusion learns its weights only where
        the graph's score is an honest guess, as at inference.
        """
        ends = self._cut_points(users)
        hop1 = self.latest_items(self.sequences, users, ends)
        context = self.sample_context("user", users, self.generator, training=True, hop1=hop1)
        out, pooled, near = self.context_states("user", users, context, self.top_hop, hop1_states=True)
        # Supervised positions: each context item (its target the sequence's next item), then [OUT] (the item at t).
        mask = hop1[1]
        rows, slots = torch.nonzero(mask, as_tuple=True)
        firsts = ends - mask.sum(1)  # the sequence position of each prompt's first context item
        positions = torch.cat([firsts[rows] + slots + 1, ends])  # the targets' positions in the sequence
        states = torch.cat([near[rows.to(out.device), slots.to(out.device)], out])
        rows = torch.cat([rows, torch.arange(len(users))])
        owners = users.cpu()[rows].tolist()
        targets = torch.tensor([int(self.sequences[u][t]) for u, t in zip(owners, positions.tolist())])
        fuse = self.held_items is not None and not self.score_fusion.lm_alone(training=True)
        unseen = torch.tensor([fuse and t >= len(self.lm_history[u]) for u, t in zip(owners, positions.tolist())],
                              dtype=torch.bool)
        logits, targets, unseen = self.logits(states), targets.to(out.device), unseen.to(out.device)
        losses = [F.cross_entropy(logits[~unseen], targets[~unseen], reduction="none")]
        if unseen.any():
            fused = self.fused_logits(users[rows.to(users.device)][unseen], logits[unseen], training=True)
            losses.append(F.cross_entropy(fused, targets[unseen], reduction="none"))
        return targets[-len(users):], context, torch.cat(losses).mean(), pooled

    def loss_terms(self, interaction):
        """The terms of GAL-Rec's loss for a batch of users, unweighted: L0 and those switched on, plus ``reg``."""
        users = interaction[self.USER_ID]
        l0_of = self._next_item_l0 if self.lm_objective == "next_item" else self._target_l0
        targets, context, l0, pooled = l0_of(users)
        terms = {"L0": l0}

        use_l2 = self.use_l2 and self.use_hop2
        if self.use_l1 or use_l2 or self.use_l3:
            self._momentum_update()
        pushes = []
        if self.use_l1:
            terms["L1"] = self._alignment("user", users, context, pooled, [0], pushes)
        if use_l2:
            terms["L2"] = self._alignment("user", users, context, pooled, [1], pushes)
        if self.use_l3:
            items = targets
            item_context = self.sample_context("item", items, self.generator, training=True)
            item_pooled = self.context_states("item", items, item_context, self.top_hop)[1]
            terms["L3"] = self._alignment("item", items, item_context, item_pooled, range(self.top_hop), pushes)
        if self.use_queue:
            for name, key in pushes:
                self.queues[name].push(key)
        terms["reg"] = sum(p.pow(2).sum() for p in self.graph_aware_parameters())
        return terms

    def calculate_loss(self, interaction):
        """L = L0 + λ1·L1 + λ2·L2 + λ3·L3 + λ4·||Θ||² on a batch of user ids."""
        terms = self.loss_terms(interaction)
        weights = {"L0": 1.0, "L1": self.lambda1, "L2": self.lambda2, "L3": self.lambda3, "reg": self.lambda4}
        return sum(weights[name] * value for name, value in terms.items())

    # ----- scoring ------------------------------------------------------------------------------

    def lm_logits(self, users):
        """The head's scores of every item for ``users`` in their fixed inference context."""
        rows = users.cpu()
        (hop1, mask1), (hop2, mask2) = self.inference_context
        context = (hop1[rows], mask1[rows]), (hop2[rows], mask2[rows])
        return self.logits(self.context_states("user", users, context, self.top_hop)[0])
