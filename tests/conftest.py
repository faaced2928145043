"""Shared test fixtures.

The whole suite runs on pytest-xdist (``-n 2``, README): each worker then trains with one torch
thread and in a working folder of its own (``worker_folder``).

``tiny_llm_path`` builds a tiny randomly initialised Llama and a real byte-level BPE tokenizer in
code and saves both with ``save_pretrained``, so tests go through the same ``from_pretrained``
path as a real checkpoint while staying offline and taking well under a second.
"""

import os

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

# A few hundred words in the register the plugin's prompts use, so common template words become
# single tokens, as they would with a real tokenizer.
_CORPUS = """
Reorder the randomly shuffled descriptions of items in align with item tokens. Select items
interacted by the user from given items. User token, item tokens, user tags, the user's potential
interest. Use five tags to summarize the user's taste. Use five words to predict the user's
interests. A movie about a detective who solves a mystery in a small town at night. A comedy
about two friends on a road trip across the country in an old car. A drama set in a hospital
where young doctors learn about life, loss and love. An animated film for children and their
parents about a brave little fish searching for home in the ocean. A science fiction story of
astronauts travelling to a distant planet to save the earth from a dying sun. A horror film in
which a family moves into a haunted house and strange things happen every night. A romance
between a baker and a musician who meet in a rainy city. A war film about soldiers who must cross
a river under fire. A documentary on the history of jazz music and its greatest players. A
thriller about a spy who discovers that her own agency has betrayed her. A fantasy adventure with
dragons, wizards and a young hero who finds a magic sword. A western about a lonely sheriff who
defends a town against a gang of outlaws. A musical about dancers in a big theatre who dream of
fame. A crime story about a bank robbery that goes wrong. Organic green tea, fresh coffee beans,
dark chocolate, whole wheat bread, olive oil, honey, pasta, rice, beans, apples, bananas and
oranges. A novel about a girl who grows up on a farm and becomes a famous writer. A book of poems
about the sea, the wind and the mountains. A cookbook with simple recipes for every day of the
week. The user liked action, adventure, comedy, drama, thriller and science fiction movies. The
user bought tea, coffee, chocolate and bread. The user read fantasy novels, poems and history
books. Graph language token alignment trains large recommendation models. Collaborative semantics
of language model driven recommendations via graph aware learning. Neighbours of the user, items
of the neighbours, one hop, two hops, the queue of keys and the momentum encoder.
"""

# Set by pytest-xdist in each of its worker processes ("gw0", "gw1", ...); absent in a plain run.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")


def pytest_configure(config):
    if XDIST_WORKER:
        # One worker per core: more torch threads would only make the workers compete for the cores.
        torch.set_num_threads(1)
        # So do the processes tests start (benchmark rows, the ranks of a multi-process run).
        os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def worker_folder(tmp_path_factory):
    """Under pytest-xdist, each worker runs in a folder of its own, so that RecBole's ``./log/<model>``
    (created check-then-create) and ``./log_tensorboard`` of two workers training the same model at
    once never collide. Every test that needs the checkout finds it through ``__file__``."""
    if not XDIST_WORKER:
        yield
        return
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(tmp_path_factory.mktemp("worker"))
        yield


SPECIAL_TOKENS = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}


@pytest.fixture(scope="session", autouse=True)
def minilm_once_per_worker():
    """MiniLM embeds a dataset's texts once per test process: ~20 s of one core for ml-100k's 1,682
    titles, which eight tests would otherwise repeat, each with a cache folder of its own.

    Only whole-dataset calls (100 texts or more) under ``text_encoder: minilm`` are kept, keyed by the
    texts and the token limit; each caller gets a copy. The first call computes for real, and
    ``text_embeddings`` still writes and reads its own cache file around it, so every cache path stays
    tested; the encoder's own tests embed short lists, which always go through.
    """
    from recbole_llm.data import text_embedding

    real = text_embedding.embed_texts
    kept = {}

    def embed_texts(texts, config, batch_size=32, loaded=None):
        if len(texts) < 100 or text_embedding.text_encoder(config) != "minilm":
            return real(texts, config, batch_size=batch_size, loaded=loaded)
        key = (tuple(texts), text_embedding.option(config, "text_max_tokens", 128))
        if key not in kept:
            kept[key] = real(texts, config, batch_size=batch_size, loaded=loaded)
        return kept[key].clone()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(text_embedding, "embed_texts", embed_texts)
        yield


def _build_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE like GPT-2/SmolLM2, adding BOS by default like Llama tokenizers do."""
    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_CORPUS], trainer=trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


@pytest.fixture(scope="session")
def tiny_llm_path(tmp_path_factory) -> str:
    """Folder with a tiny random Llama (2 layers, hidden 64) and its tokenizer, saved HF-style."""
    torch.manual_seed(0)
    tokenizer = _build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    path = tmp_path_factory.mktemp("tiny_llm")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a whole test module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    with several, the CPU kernels' reductions change order from run to run, so two trainings of the
    same model already differ in the last bits and "the same weights" cannot be checked exactly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# GAL-Rec's defaults before the text-aware ones (properties/model/GALRec.yaml): stage 1 over IDs with BPR, the
# target objective with a holdout graph and the residual fusion. Tests of those mechanisms pin them.
GALREC_BEFORE = {"graph_model": "FastLightGCN", "graph_loss": "bpr", "id_tower": 0.0, "id_tower_users": "id",
                 "graph_eval_step": None, "epochs": 20, "eval_step": 1, "score_fusion": "residual", "lm_holdout_ratio": 0.1,
                 "fold_in_valid": False, "lm_objective": "target", "next_item_cut": "random"}


# GLTA's defaults before the text-aware stage 1 (properties/model/GLTA.yaml): the papers' stage 1 (IDs, BPR), every
# user in each stage-3 epoch, the test without the validation items, 40 history items. Tests of those mechanisms
# pin them.
GLTA_BEFORE = {"graph_model": "FastLightGCN", "graph_loss": "bpr", "id_tower": 0.0, "id_tower_users": "id",
               "graph_eval_step": None, "users_per_epoch": None, "fold_in_valid": False, "max_history": 40}

# Each model's defaults before the text-aware ones, by RecBole model name.
BEFORE = {"GLTA": GLTA_BEFORE, "GALRec": GALREC_BEFORE}


@pytest.fixture(scope="module")
def llm_base(tiny_llm_path, tmp_path_factory):
    """The config entries every test of a language-model recommender starts from: the tiny backbone at
    full depth, quiet logs, and a cache and checkpoint folder of the test module's own."""
    return {
        "llm_path": tiny_llm_path, "llm_num_layers": None, "llm_cache_dir": str(tmp_path_factory.mktemp("cache")),
        "show_progress": False, "state": "WARNING", "checkpoint_dir": str(tmp_path_factory.mktemp("ckpt")),
    }


def build_run(model, config_dict, config_files=None, dataset="ml-100k"):
    """Config, model, trainer and the three splits of one run, seeded as the runner seeds them."""
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_llm.config import Config
    from recbole_llm.utils import create_dataset, get_model, get_trainer

    config = Config(model, dataset, config_file_list=config_files, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    built = get_model(config["model"])(config, train._dataset)
    return config, built, get_trainer(config["MODEL_TYPE"], config["model"])(config, built), train, valid, test


@pytest.fixture(scope="session")
def build():
    """``build_run``, for tests and module fixtures: ``build("GLTA", {...})``."""
    return build_run
