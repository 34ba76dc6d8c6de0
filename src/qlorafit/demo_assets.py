"""The offline demo: a tokenizer trained at run time on the demo data, and a tiny random Llama saved to disk.

`qlorafit/tiny-llama` resolves (qlorafit.core.catalog.resolve_model_path) to a directory written here, so the demo and the tests take transformers' real
from_pretrained + bitsandbytes 4-bit load path on CPU, with nothing downloaded. Heavy imports happen inside the
functions; importing this module costs nothing.
"""

import json
import os
import shutil
from pathlib import Path


DEMO_MODEL = "qlorafit/tiny-llama"
DEMO_VERSION = 3  # bump when the tokenizer, config or init changes: the cached directory is rebuilt
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]
VOCAB_SIZE = 1024  # BPE target; small enough that the embedding and lm_head are a few hundred KiB


def _demo_texts() -> list[str]:
    """The texts the demo model will see, rendered as training renders them, for the BPE merges."""
    from qlorafit.runtime.data import read_records
    from qlorafit.runtime.formats import to_example

    texts = []
    for name in ("demo_train.jsonl", "demo_chat.jsonl"):
        records, _ = read_records(str(Path(__file__).resolve().parent / "assets" / name))
        for r in records:
            if "messages" in r.fields:
                texts += [m["content"] for m in r.fields["messages"]]
            else:
                # the alpaca prompt as a tokenizer without a chat template gets it
                texts += [t for t, _ in to_example(r.fields, "alpaca", "text", r.where, has_template=False).segments]
    return texts


def demo_tokenizer():
    """A byte-level BPE (any text round-trips) trained on the demo data: deterministic, well under a second.

    Llama-like: bos prepended by the post-processor, eos appended by qlorafit's data code, a separate pad token, and
    the same chat template as qlorafit's fallback.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from qlorafit.runtime.data import FALLBACK_CHAT_TEMPLATE

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_demo_texts(), trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", extra_special_tokens=SPECIAL_TOKENS[4:],
                                   chat_template=FALLBACK_CHAT_TEMPLATE, model_max_length=1024)


def demo_model_config(vocab_size: int) -> dict:
    """A tiny Llama (~0.6 M parameters): 2 layers, hidden 128, 4 heads with 2 KV heads (GQA, like real Llamas)."""
    return {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "vocab_size": vocab_size, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 1024,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3,
    }


def demo_model_dir(root: Path) -> Path:
    """Write the demo model (seeded random weights) and tokenizer under root, once; later calls reuse it."""
    target = Path(root).expanduser() / f"tiny-llama-v{DEMO_VERSION}"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = demo_tokenizer()
    cfg = demo_model_config(len(tok))
    assert [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id] == [cfg["bos_token_id"], cfg["eos_token_id"],
                                                                      cfg["pad_token_id"]]
    cfg.pop("model_type")
    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(**cfg))
        # The head stays frozen under LoRA. At the default init std (0.02) its best logit is ~2.5, which floors the
        # loss near 4.4 nats whatever the adapters learn; std 0.1 lets the demo's loss fall visibly (6.9 -> ~4.6 in
        # 200 steps at lr 2e-4, -> ~3.4 at 1e-3, attention-only r=16, micro-batch 8).
        torch.nn.init.normal_(model.lm_head.weight, std=0.1)
    # Built beside the target and renamed into place, so a crash or a second process never sees half a model.
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "qlorafit_demo.json").write_text(json.dumps({"version": DEMO_VERSION, "seed": 0}) + "\n")
    try:
        tmp.rename(target)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return target
