"""User profile tags and predicted interests, generated once by the backbone and cached on disk.

GLTA's optional prompt texts: from the descriptions of a user's training items the language model
writes ``profile_words`` tags that summarise the user ("profile") or ``prediction_words`` words that
predict their interests ("prediction"). The answer is started for it ("User tags:", "Interests:") and the
text is what follows. Generation uses the full backbone (no layer truncation, no LoRA), greedy
decoding, batched with left padding.

The cache file is keyed by the backbone, the instruction and answer prefix, and a digest of every user's training
items and their descriptions, so a different dataset, split or seed can never reuse another's
texts; it is written atomically. Every ``SAVE_EVERY`` batches the texts so far are saved beside it
(``.partial.json``), so a killed run resumes generation where it stopped.
"""

import hashlib
import json
import logging
import time

import torch

from recbole_llm.helpers import atomic_write, cache_root, progress
from recbole_llm.llm import load_backbone, render_chat

logger = logging.getLogger(__name__)

SAVE_EVERY = 5  # batches between saves of the partial result

INSTRUCTIONS = {
    "profile": "Use {n} tags to summarize the user's preferences. Answer with the tags only, separated by commas.",
    "prediction": "Use {n} words to predict the user's interests. Answer with the words only, separated by commas.",
}

# The answer's first words (the paper's prompt labels the profile "User tags:"), written after the
# assistant's opening so that generation continues a list instead of starting free text. Without
# them SmolLM2-135M repeated the prompt ("The user interacted with these items: ...") for nearly
# every user, with them for none, and the shorter "Tags:" still left some repeats
# (benchmarks/notes/ml-100k.md, "What the backbone writes").
ANSWER_PREFIXES = {"profile": "User tags:", "prediction": "Interests:"}


def _user_prompt(items, descriptions, instruction):
    listed = "; ".join(descriptions[i] for i in items)
    return f"The user interacted with these items: {listed}. {instruction}"


def user_texts(config, dataset, history, descriptions, kind, batch_size=32, prefix=None):
    """One generated text per internal user id (index 0, the padding user, is ``""``).

    ``prefix`` replaces ``ANSWER_PREFIXES[kind]`` as the answer's first words (it is part of the
    cache key), so that a probe can compare prefixes without touching the module's table.
    """
    n = config["profile_words"] if kind == "profile" else config["prediction_words"]
    instruction = INSTRUCTIONS[kind].format(n=n)
    shown = [list(items[: config["user_text_items"]]) for items in history]
    prefix = ANSWER_PREFIXES[kind] if prefix is None else prefix
    digest = hashlib.sha256(json.dumps([config["llm_path"], instruction, prefix, config["user_text_max_tokens"],
                                        [[descriptions[i] for i in items] for items in shown]]).encode()).hexdigest()[:16]
    path = cache_root(config["llm_cache_dir"]) / "user_text" / f"{config['dataset']}-{kind}-{digest}.json"
    if path.is_file():
        return json.loads(path.read_text())

    logger.info("Generating %s text for %d users with %s (cached in %s)", kind, len(history), config["llm_path"], path)
    generator, tokenizer = load_backbone({"llm_path": config["llm_path"], "llm_cache_dir": config["llm_cache_dir"],
                                          "llm_dtype": config["llm_dtype"]}, causal_lm=True)
    tokenizer.padding_side = "left"
    chats = [render_chat(tokenizer, _user_prompt(items, descriptions, instruction)) + prefix if items else None
             for items in shown]
    texts = [""] * len(chats)
    todo = [u for u, chat in enumerate(chats) if chat]
    # Progress is saved every SAVE_EVERY batches, so a killed run picks up where it stopped.
    partial = path.with_name(path.stem + ".partial.json")
    done = 0
    if partial.is_file():
        saved = json.loads(partial.read_text())
        texts, done = saved["texts"], saved["done"]
        logger.info("Resuming %s text generation at user %d of %d (%s)", kind, done, len(todo), partial)
    began = time.perf_counter()
    show_progress = "show_progress" in config and bool(config["show_progress"])
    with torch.no_grad(), progress(len(todo), f"User {kind} texts", show_progress, unit="user") as bar:
        bar.update(done)
        for start in range(done, len(todo), batch_size):
            users = todo[start:start + batch_size]
            inputs = tokenizer([chats[u] for u in users], return_tensors="pt", padding=True, add_special_tokens=False)
            output = generator.generate(**inputs, max_new_tokens=config["user_text_max_tokens"], do_sample=False,
                                        pad_token_id=tokenizer.pad_token_id)
            new = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            for user, text in zip(users, new):
                texts[user] = " ".join(text.split())
            finished = start + len(users)
            bar.update(len(users))
            if (start // batch_size + 1) % SAVE_EVERY == 0 and finished < len(todo):
                atomic_write(partial, lambda f: json.dump({"done": finished, "texts": texts}, f), mode="w")
                if not show_progress:  # the bar shows the same
                    elapsed = time.perf_counter() - began
                    logger.info("Generating %s text: %d of %d users, %.0f s so far, about %.0f s to go", kind,
                                finished, len(todo), elapsed, elapsed / (finished - done) * (len(todo) - finished))
    logger.info("Generated %s text for %d users in %.0f s", kind, len(todo) - done, time.perf_counter() - began)
    atomic_write(path, lambda f: json.dump(texts, f), mode="w")
    partial.unlink(missing_ok=True)
    return texts
