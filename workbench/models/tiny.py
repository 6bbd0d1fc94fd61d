"""Tiny seeded models for fast tests: one per supported family (GPT-2, Llama, GPT-NeoX, Gemma 1-3, Qwen 2/3, MoE...).

Each tiny model is built from a config with a fixed seed, saved in Hugging Face layout
(``config.json``, ``model.safetensors``, tokenizer files) to a directory, and then loaded
through the same local-directory path a user's checkpoint takes. The tokenizer is a
byte-level tokenizer (256 byte tokens plus special tokens, no merges) with a ChatML-style
chat template, so any text tokenizes and chat templating can be tested without a hub.

Weights are initialised with a larger standard deviation (0.1) than the architectures'
default (0.02) so activations and logits are far from zero and a 1e-4 agreement check
between backends is a real check, not a comparison of numbers that are all nearly zero.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

__all__ = ["TINY_ARCHITECTURES", "build_tiny_tokenizer", "build_tiny_model", "tiny_model_dir"]

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
INIT_STD = 0.1


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode map (the ByteLevel alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def build_tiny_tokenizer(directory: str | Path):
    """Write a byte-level tokenizer (vocab 260) with a chat template to ``directory``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = _bytes_to_unicode()
    vocab = {alphabet[b]: b for b in range(256)}
    for i, tok in enumerate(SPECIAL_TOKENS):
        vocab[tok] = 256 + i
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(SPECIAL_TOKENS)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tok.chat_template = CHAT_TEMPLATE
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(directory)
    return tok


def _gpt2_config(vocab: int):
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=vocab, n_positions=256, n_embd=64, n_layer=2, n_head=4, n_inner=128,
        bos_token_id=256, eos_token_id=256, pad_token_id=259, initializer_range=INIT_STD,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )


def _llama_config(vocab: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=256, eos_token_id=256, pad_token_id=259, initializer_range=INIT_STD,
        tie_word_embeddings=False, rms_norm_eps=1e-5,
    )


def _neox_config(vocab: int):
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=256, rotary_pct=0.25,
        use_parallel_residual=True, bos_token_id=256, eos_token_id=256, pad_token_id=259,
        initializer_range=INIT_STD, tie_word_embeddings=False, hidden_dropout=0.0,
        attention_dropout=0.0,
    )


def _auto(model_type: str, **kw) -> Callable:
    """A tiny config of ``model_type`` from transformers' own config class (no download)."""
    def make(vocab: int):
        from transformers import AutoConfig

        base = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, bos_token_id=256,
                    eos_token_id=256, pad_token_id=259, initializer_range=INIT_STD, tie_word_embeddings=False,
                    attention_dropout=0.0)
        base.update(kw)
        return AutoConfig.for_model(model_type, **base)
    return make


def _gptj_config(vocab: int):
    from transformers import GPTJConfig

    return GPTJConfig(vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_inner=128, rotary_dim=8, n_positions=256,
                      bos_token_id=256, eos_token_id=256, pad_token_id=259, initializer_range=INIT_STD,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=False)


def _gemma3_multimodal(vocab: int):
    """Gemma 3 as released: a multimodal checkpoint whose config nests the text decoder's (tiny vision tower)."""
    from transformers import AutoConfig

    text = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, max_position_embeddings=256, sliding_window=8,
                layer_types=["sliding_attention", "sliding_attention", "full_attention"], bos_token_id=256,
                eos_token_id=256, pad_token_id=259, initializer_range=INIT_STD, query_pre_attn_scalar=16)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)
    return AutoConfig.for_model("gemma3", text_config=text, vision_config=vision, mm_tokens_per_image=4,
                                image_token_index=258, boi_token_index=257, eoi_token_index=257,
                                initializer_range=INIT_STD, tie_word_embeddings=True)


# Every family the workbench names as supported, as a tiny random model (2-3 layers, d_model 64).
# Sliding windows are 8 tokens so tests with longer sequences exercise the local-attention masks.
TINY_ARCHITECTURES: dict[str, Callable] = {
    "gpt2": _gpt2_config,
    "llama": _llama_config,
    "neox": _neox_config,
    "mistral": _auto("mistral", sliding_window=None),
    "qwen2": _auto("qwen2"),
    "gemma": _auto("gemma", head_dim=16, tie_word_embeddings=True),
    "gemma2": _auto("gemma2", head_dim=16, num_hidden_layers=3, sliding_window=8, query_pre_attn_scalar=16,
                    final_logit_softcapping=5.0, attn_logit_softcapping=8.0, tie_word_embeddings=True),
    "gemma3": _auto("gemma3_text", head_dim=16, num_hidden_layers=3, sliding_window=8, query_pre_attn_scalar=16,
                    layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                    tie_word_embeddings=True),
    "gemma3-mm": _gemma3_multimodal,
    "qwen3": _auto("qwen3", head_dim=16),
    "qwen3-moe": _auto("qwen3_moe", head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                       decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True),
    "phi3": _auto("phi3", original_max_position_embeddings=256, resid_pdrop=0.0, embd_pdrop=0.0),
    "olmo2": _auto("olmo2"),
    "mixtral": _auto("mixtral", num_local_experts=4, num_experts_per_tok=2, sliding_window=None),
    "gptj": _gptj_config,
    # parallel attention and MLP, whose MLP output the layer updates in place (`mlp_output += attention_output`)
    "falcon": _auto("falcon", num_kv_heads=1, hidden_dropout=0.0, bias=False),
    # multipliers outside the modules (the config's defaults of 1 would hide them; Granite 3 ships 12, 0.22, 1/128
    # and 8, with which this random model's layers barely change its output, so the lens tests could not tell them
    # from the embedding stage)
    "granite": _auto("granite", embedding_multiplier=2.0, residual_multiplier=0.5, attention_multiplier=0.1,
                     logits_scaling=2.0),
    # the same multipliers, with experts whose router returns its logits first (TransformerLens 4.3 expects them last)
    "granitemoe": _auto("granitemoe", embedding_multiplier=2.0, residual_multiplier=0.5, attention_multiplier=0.1,
                        logits_scaling=2.0, num_local_experts=4, num_experts_per_tok=2, intermediate_size=32),
    # a router the adapter names `router` (not `gate`), attention sinks, local and global layers
    # a dense first layer, then routed ones (a router the adapter names only by its gate Linear), gated attention,
    # muP input scaling
    "afmoe": _auto("afmoe", head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                   num_dense_layers=1, num_shared_experts=1, sliding_window=8, mup_enabled=True,
                   layer_types=["sliding_attention", "full_attention"]),
    # embeddings normalised (by the final norm module, parameter-free) before layer 0; final-logit soft-capping
    "nanochat": _auto("nanochat", head_dim=16),
    "gpt-oss": _auto("gpt_oss", head_dim=16, num_local_experts=4, num_experts_per_tok=2, intermediate_size=32,
                     sliding_window=8, layer_types=["sliding_attention", "full_attention"]),
}


def build_tiny_model(arch: str, directory: str | Path, seed: int = 0) -> Path:
    """Build the tiny ``arch`` model with ``seed`` and save it (HF layout) to ``directory``."""
    import torch
    from transformers import AutoModelForCausalLM

    if arch not in TINY_ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {sorted(TINY_ARCHITECTURES)}")
    directory = Path(directory)
    tok = build_tiny_tokenizer(directory)
    config = TINY_ARCHITECTURES[arch](len(tok))
    config.dtype = "float32"
    devnull_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = AutoModelForCausalLM.from_config(config)
        with torch.no_grad():  # larger-than-default init, norms left at their defaults
            for name, p in model.named_parameters():
                if p.ndim >= 2:
                    p.normal_(0.0, INIT_STD)
                elif name.endswith("bias"):
                    p.normal_(0.0, INIT_STD)
    finally:
        torch.random.set_rng_state(devnull_state)
    model.save_pretrained(directory, safe_serialization=True)
    (directory / "workbench_tiny.json").write_text(json.dumps({"arch": arch, "seed": seed}))
    return directory


def tiny_model_dir(arch: str, seed: int, cache_root: Path) -> Path:
    """Directory of the cached tiny model, building it on first use."""
    directory = cache_root / f"tiny-{arch}-seed{seed}"
    marker = directory / "workbench_tiny.json"
    if not marker.exists():
        import os
        import shutil

        from ..store import clean_stale_partials, partial_path

        clean_stale_partials(cache_root)
        tmp = partial_path(directory)
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            build_tiny_model(arch, tmp, seed)
            os.rename(tmp, directory)
        except OSError:  # another process finished first: keep its copy
            pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return directory
