#!/usr/bin/env python3
"""Write Hugging Face model-family cases (the layout of tests/fixtures/hf_models) with the oracle.

Each case is a directory OUT/<name>/ exactly as the shipped set (transformers 4.47 + PEFT 0.20):

    base/config.json, base/generation_config.json, base/model.safetensors   (save_pretrained, fp32)
    adapter/adapter_config.json, adapter/adapter_model.safetensors, adapter/README.md
                                 (PEFT LoRA, target_modules="all-linear", init_lora_weights=False)
    expected.safetensors         input_ids [B, T] int64; logits_base, logits_adapter,
                                 logits_merged (after merge_and_unload) [B, T, V] fp32;
                                 greedy_base, greedy_adapter [B, T + steps] int64 (prompt, then
                                 `steps` greedy tokens: argmax at the last position, a full
                                 forward per step, no EOS stop)
    case.json                    family, class, targets (sorted targeted module keys), r,
                                 lora_alpha, use_rslora, transformers (version)

plus OUT/manifest.json (not a case: every case's settings, seeds and check results).

Procedure per case: torch.manual_seed(seed); a tiny randomly initialised model from its config
(attn_implementation "eager", fp32; 2-D weights keep transformers' init N(0, initializer_range));
every 1-D parameter (norm weights, biases) gets + N(0, perturb) so no norm is an identity;
input_ids uniform in [0, vocab); then LoRA (A, B from PEFT's own init with init_lora_weights=False,
after torch.manual_seed(seed + 2)). B = 2, T = 19, steps = 8 unless the case or the command line
says otherwise. The six "visible" cases repeat the shipped families' settings; --variants adds
cases with other sizes, seeds and settings (sliding windows, rope scalings, biases, tying, GQA
ratios, activations, rs-LoRA, r 2..8, batch 3).

Checks (printed, and in manifest.json): the adapter changes the logits (max |adapter - base| >
1e-3); merged == adapter (<= 1e-4); a reload check: from_pretrained(base) +
PeftModel.from_pretrained(adapter) reproduce the logits (so config.json round-trips, including
edited keys); for variants, each "contrast" config (the same weights without the setting under
test: no sliding window, no rope scaling, the other activation, ...) must move the logits on the
greedy sequence by > 5e-4, so the case really tests that setting; greedy rows that repeat one
token for every step (DEGENERATE when every row of greedy_base or greedy_adapter does) and the
smallest top-2 logit gap met in greedy decoding (< 1e-5: a tie a port may break the other way).
--max-tries K (default 8) rewrites a case with seed + k*1000 until no row repeats and every gap
is >= 1e-4, else keeps the best try; the seed used is in manifest.json. The tied visible
families (gpt2, qwen2, gemma) stay degenerate at initializer_range 0.02 whatever the seed (a tied
tiny model mostly predicts its last input token again), as the shipped files are; the tied
variants use a larger initializer_range. A case transformers or PEFT fails on is reported and
skipped (exit status 1).

EXTRA cases (only with --cases, e.g. --cases phi3_longrope_cross) are valid transformers outputs
on which a KV-cache decode cannot equal a full forward per step (see the comment at EXTRA).
The batch-3 cases are named *_b3*; --skip '*_b3*' leaves them out.

Run (oracle environment, see /work/shared/oracle/README.md):

    source /work/shared/oracle/env.sh
    "$ORACLE_PYTHON" tests/python/make_hf_model_cases.py --out /tmp/hidden_hf               # visible six
    "$ORACLE_PYTHON" tests/python/make_hf_model_cases.py --out /tmp/hidden_hf --variants    # + variants
    "$ORACLE_PYTHON" tests/python/make_hf_model_cases.py --out /tmp/hf_visible \\
        --compare-to tests/fixtures/hf_models --verify-shipped tests/fixtures/hf_models
    PEFT_HF_MODELS=/tmp/hidden_hf build/tests/peft_unit_tests --gtest_filter='*HfFamilies*'

--compare-to DIR checks the regenerated visible cases against DIR (same config, generation config,
adapter config, case.json, tensor names/dtypes/shapes); --verify-shipped DIR recomputes DIR's
expected.safetensors from its own base/ and adapter/ with this script's forward/greedy/merge code.
--list prints the cases and exits; --cases/--skip take comma-separated fnmatch patterns;
--seed-offset N shifts every seed (another random set of the same settings); --batch, --seq-len,
--steps change the defaults of cases that do not set their own.
"""

import argparse
import copy
import fnmatch
import json
import logging
import math
import os
import shutil
import struct
import sys
import time
import traceback
import warnings

import torch

from safetensors.torch import load_file, save_file

import peft
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    GemmaConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    Qwen2Config,
)

DEFAULT_OUT = "/tmp/hidden_hf"
ADAPTER_MIN_EFFECT = 1e-3  # max |logits_adapter - logits_base| must exceed this
CONTRAST_MIN_EFFECT = 5e-4  # a contrast config must move the logits by more (5x the tests' 1e-4 atol)
MERGE_ATOL = 1e-4  # max |logits_merged - logits_adapter|
RELOAD_ATOL = 1e-5  # reloaded checkpoint vs in-memory model
TIE_GAP = 1e-5  # top-2 logits closer than this: a greedy tie
ACCEPT_GAP = 1e-4  # --max-tries reseeds a case until no greedy row is constant and every top-2 gap >= this
SEED_STRIDE = 1000  # try k uses seed + k * SEED_STRIDE

# ------------------------------------------------------------------------------------------------
# Families: config class, model class, and the shipped fixtures' config (hf_models/*/base/config.json).

FAMILIES = {
    "gpt2": dict(
        config=GPT2Config,
        cls="GPT2LMHeadModel",
        base=dict(vocab_size=320, n_embd=64, n_layer=2, n_head=4, n_positions=256,
                  resid_pdrop=0, embd_pdrop=0, attn_pdrop=0),
    ),
    "llama": dict(
        config=LlamaConfig,
        cls="LlamaForCausalLM",
        base=dict(vocab_size=320, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    ),
    "mistral": dict(
        config=MistralConfig,
        cls="MistralForCausalLM",
        base=dict(vocab_size=320, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=256,
                  rope_theta=1000000.0, sliding_window=None),
    ),
    "qwen2": dict(
        config=Qwen2Config,
        cls="Qwen2ForCausalLM",
        base=dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  rope_theta=1000000.0, tie_word_embeddings=True),
    ),
    "gemma": dict(
        config=GemmaConfig,
        cls="GemmaForCausalLM",
        base=dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=1, head_dim=24, max_position_embeddings=256,
                  hidden_activation="gelu_pytorch_tanh"),
    ),
    "phi3": dict(
        config=Phi3Config,
        cls="Phi3ForCausalLM",
        base=dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
                  pad_token_id=0),
    ),
}


def case(name, family, seed, lora_alpha, use_rslora, r=4, config=None, edit=None, contrast=None, **run):
    """A case: `config` overrides the family's base config kwargs; `edit` sets (value) or deletes
    (the string "<absent>") keys of the saved config.json; `contrast` is a config override (or a
    list of them) whose effect on the same weights must be visible, i.e. the setting under test
    matters (max logit change on the greedy_base sequence > CONTRAST_MIN_EFFECT); `run` may set
    batch, seq_len, steps, perturb."""
    if isinstance(contrast, dict):
        contrast = [contrast]
    kwargs = copy.deepcopy(FAMILIES[family]["base"])
    kwargs.update(copy.deepcopy(config or {}))
    return dict(name=name, family=family, seed=seed, r=r, lora_alpha=lora_alpha, use_rslora=use_rslora,
                config=kwargs, edit=edit or {}, contrast=contrast or [], **run)


ABSENT = "<absent>"

# The shipped six (r 4; lora_alpha / use_rslora as their case.json).
VISIBLE = [
    case("gpt2", "gpt2", 1, 8, False),
    case("llama", "llama", 2, 9, True),
    case("mistral", "mistral", 3, 10, False),
    case("qwen2", "qwen2", 4, 11, True),
    case("gemma", "gemma", 5, 12, False),
    case("phi3", "phi3", 6, 13, True),
]


def longrope_factors(head_dim, seed, lo, hi):
    """head_dim // 2 rope rescale factors, deterministic per seed, in [lo, hi], increasing."""
    g = torch.Generator().manual_seed(seed)
    f = torch.sort(lo + (hi - lo) * torch.rand(head_dim // 2, generator=g, dtype=torch.float64)).values
    return [round(float(x), 4) for x in f]


def longrope_case(name, seed, lora_alpha, use_rslora, r, original, max_pos, short, long, **config):
    """A phi3 case with rope_scaling longrope; `short`/`long` are (seed, lo, hi) of the factors
    (head_dim 16: 8 each). Contrasts: no scaling, the factor lists swapped, and max = original
    (attention factor 1)."""
    head_dim = config.get("hidden_size", 64) // config.get("num_attention_heads", 4)
    sf, lf = longrope_factors(head_dim, *short), longrope_factors(head_dim, *long)
    config.update(original_max_position_embeddings=original, max_position_embeddings=max_pos,
                  rope_scaling={"type": "longrope", "short_factor": sf, "long_factor": lf})
    swapped = {"type": "longrope", "short_factor": lf, "long_factor": sf}
    return case(name, "phi3", seed, lora_alpha, use_rslora, r=r, config=config,
                contrast=[dict(rope_scaling=None), dict(rope_scaling=swapped),
                          dict(max_position_embeddings=original)])


# A larger initializer_range makes the layers' output comparable with the (tied) embeddings and
# with the perturbed biases, so greedy decoding does not just repeat one token (with the default
# 0.02 a tied model mostly predicts its last input token again; Gemma's sqrt(hidden) embedding
# scale needs more).
TIED_INIT = 0.15
GEMMA_TIED_INIT = 0.25
NO_WINDOW = dict(sliding_window=None)

VARIANTS = [
    # --- mistral: sliding windows shorter than the prompt, other GQA ratios, head_dim override
    case("mistral_window4", "mistral", 101, 16, False, r=4,
         config=dict(sliding_window=4, num_key_value_heads=2), contrast=NO_WINDOW),
    case("mistral_window7", "mistral", 102, 6, True, r=6,
         config=dict(sliding_window=7, num_key_value_heads=4, num_hidden_layers=3), contrast=NO_WINDOW),
    case("mistral_window5_gqa8x1", "mistral", 103, 8, False, r=2,
         config=dict(sliding_window=5, num_attention_heads=8, num_key_value_heads=1, head_dim=16,
                     hidden_size=48, intermediate_size=96, vocab_size=257), contrast=NO_WINDOW),
    case("mistral_window23", "mistral", 104, 12, True, r=8,  # window between T (19) and T + steps (27)
         config=dict(sliding_window=23, num_attention_heads=6, num_key_value_heads=3, hidden_size=96,
                     intermediate_size=160, rope_theta=10000.0), contrast=NO_WINDOW),
    # --- qwen2: sliding window (eager: every layer, whatever max_window_layers), untied, rope linear
    case("qwen2_swa4", "qwen2", 111, 10, False, r=4,
         config=dict(use_sliding_window=True, sliding_window=4, tie_word_embeddings=False),
         contrast=dict(use_sliding_window=False)),
    case("qwen2_swa6_mwl1", "qwen2", 112, 7, True, r=3,
         config=dict(use_sliding_window=True, sliding_window=6, max_window_layers=1, num_hidden_layers=3,
                     initializer_range=TIED_INIT), contrast=dict(use_sliding_window=False)),
    case("qwen2_untied", "qwen2", 113, 16, False, r=8,
         config=dict(tie_word_embeddings=False, num_key_value_heads=1, vocab_size=500, rope_theta=10000.0)),
    case("qwen2_small_l1", "qwen2", 115, 3, True, r=2,
         config=dict(hidden_size=32, num_attention_heads=2, num_key_value_heads=1, intermediate_size=80,
                     num_hidden_layers=1, vocab_size=128, rms_norm_eps=1e-5, initializer_range=TIED_INIT)),
    case("qwen2_rope_linear_b3", "qwen2", 114, 5, True, r=5,
         config=dict(rope_scaling={"type": "linear", "factor": 4.0}, num_key_value_heads=4,
                     initializer_range=TIED_INIT), contrast=dict(rope_scaling=None), batch=3, seq_len=15, steps=6),
    # --- gemma: head_dim, kv heads, activation keys (hidden_activation wins; absent/null -> tanh)
    case("gemma_hd16_kv2", "gemma", 121, 8, True, r=4,
         config=dict(head_dim=16, num_key_value_heads=2, initializer_range=GEMMA_TIED_INIT)),
    case("gemma_hd32_kv4", "gemma", 122, 12, False, r=6,
         config=dict(head_dim=32, num_key_value_heads=4, hidden_size=48, intermediate_size=112,
                     vocab_size=384, initializer_range=GEMMA_TIED_INIT)),
    case("gemma_act_absent", "gemma", 123, 4, False, r=2,  # hidden_act "gelu" is ignored: tanh GELU
         config=dict(hidden_activation=None, hidden_act="gelu", initializer_range=GEMMA_TIED_INIT),
         edit=dict(hidden_activation=ABSENT), contrast=dict(hidden_activation="gelu")),
    case("gemma_act_null", "gemma", 124, 10, True, r=5,  # hidden_activation null, hidden_act "relu"
         config=dict(hidden_activation=None, hidden_act="relu", tie_word_embeddings=False,
                     num_hidden_layers=3), edit=dict(hidden_activation=None), contrast=dict(hidden_activation="relu")),
    case("gemma_act_gelu_exact", "gemma", 125, 9, False, r=4,  # hidden_activation "gelu" (erf) wins
         config=dict(hidden_activation="gelu", hidden_act="gelu_pytorch_tanh", num_attention_heads=2,
                     num_key_value_heads=2, head_dim=32, initializer_range=GEMMA_TIED_INIT),
         contrast=dict(hidden_activation="gelu_pytorch_tanh")),
    case("gemma_bias_untied", "gemma", 126, 6, True, r=3,
         config=dict(attention_bias=True, tie_word_embeddings=False, head_dim=8, num_attention_heads=8,
                     num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=500000.0)),
    # --- phi3: GQA, sliding window, longrope (long / short factors, attention factor)
    case("phi3_gqa4x2", "phi3", 131, 8, False, r=4,
         config=dict(num_key_value_heads=2, num_hidden_layers=3)),
    case("phi3_h96_l1", "phi3", 136, 16, False, r=8,
         config=dict(hidden_size=96, num_attention_heads=6, num_key_value_heads=3, intermediate_size=160,
                     num_hidden_layers=1, rope_theta=500000.0, vocab_size=640)),
    case("phi3_window6", "phi3", 132, 14, True, r=7,
         config=dict(sliding_window=6, num_attention_heads=8, num_key_value_heads=2, vocab_size=301),
         contrast=NO_WINDOW),
    # original 16 < T: long factors; max 256 / original 16: attention factor sqrt(1 + ln 16 / ln 16)
    longrope_case("phi3_longrope_long", 133, 8, True, 4, 16, 256, (1331, 1.0, 1.5), (1332, 1.0, 8.0)),
    # original 64 > T + steps: short factors; attention factor sqrt(1 + ln 4 / ln 64)
    longrope_case("phi3_longrope_short", 134, 6, False, 3, 64, 256, (1341, 1.0, 2.0), (1342, 2.0, 16.0),
                  num_key_value_heads=2),
    # --- llama: rope linear, biases, tying, llama3 with other factors, head_dim override
    case("llama_rope_linear", "llama", 141, 8, False, r=4,
         config=dict(rope_scaling={"type": "linear", "factor": 2.5}, rope_theta=10000.0),
         contrast=dict(rope_scaling=None)),
    case("llama_bias", "llama", 142, 12, True, r=6,
         config=dict(attention_bias=True, mlp_bias=True, num_key_value_heads=4, num_hidden_layers=3,
                     rope_scaling=None, initializer_range=0.08)),
    case("llama_tied", "llama", 143, 10, False, r=4,
         config=dict(tie_word_embeddings=True, num_key_value_heads=1, initializer_range=TIED_INIT)),
    case("llama3_f4_hd24", "llama", 144, 7, True, r=5,
         config=dict(rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 2.0,
                                   "high_freq_factor": 8.0, "original_max_position_embeddings": 32},
                     rope_theta=10000.0, hidden_size=48, head_dim=24, num_attention_heads=4,
                     num_key_value_heads=2, intermediate_size=128), contrast=dict(rope_scaling=None)),
    case("llama_b3_r8", "llama", 145, 16, True, r=8,
         config=dict(num_hidden_layers=1, vocab_size=1024, rope_scaling=None, rms_norm_eps=1e-6),
         batch=3, seq_len=11, steps=10),
    # --- gpt2: inverse layer-idx scaling, tying, activations, upcast/reorder, no scaling
    case("gpt2_inv_layer_idx", "gpt2", 151, 12, False, r=6,
         config=dict(scale_attn_by_inverse_layer_idx=True, n_layer=3, initializer_range=TIED_INIT),
         contrast=dict(scale_attn_by_inverse_layer_idx=False)),
    case("gpt2_untied_relu", "gpt2", 152, 6, True, r=3,
         config=dict(tie_word_embeddings=False, activation_function="relu", n_embd=48, n_head=3,
                     vocab_size=257), contrast=dict(activation_function="gelu_new")),
    case("gpt2_gelu_b3", "gpt2", 153, 4, False, r=2,
         config=dict(activation_function="gelu", n_layer=2, n_inner=96, initializer_range=0.25),
         contrast=dict(activation_function="gelu_new"), batch=3, seq_len=13, steps=6),
    case("gpt2_reorder_noscale", "gpt2", 154, 9, True, r=4,
         config=dict(reorder_and_upcast_attn=True, scale_attn_weights=False, scale_attn_by_inverse_layer_idx=True,
                     n_layer=2, tie_word_embeddings=False), contrast=dict(scale_attn_weights=True)),
]

# Not written by default (--cases to include): transformers' own behaviour makes a KV-cache decode
# differ from a full forward per step, so a port's cache-vs-full check cannot pass on them.
EXTRA = [
    # original_max_position_embeddings 22: T = 19 uses the short factors, greedy steps from length
    # 23 on switch every position to the long factors (Phi3LongRoPEScaledRotaryEmbedding picks the
    # factors from the current total length).
    longrope_case("phi3_longrope_cross", 135, 8, False, 4, 22, 128, (1351, 1.0, 1.2), (1352, 1.5, 6.0)),
]


# ------------------------------------------------------------------------------------------------


def new_model(spec, seed):
    fam = FAMILIES[spec["family"]]
    torch.manual_seed(seed)
    config = fam["config"](**copy.deepcopy(spec["config"]))
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", torch_dtype=torch.float32)
    if type(model).__name__ != fam["cls"]:
        raise RuntimeError(f"built {type(model).__name__}, expected {fam['cls']}")
    if model.config._attn_implementation != "eager":
        raise RuntimeError(f"attention is {model.config._attn_implementation}, not eager")
    return model.float().eval()


def perturb_1d(model, seed, std):
    """Move every 1-D parameter (norm weights, biases) off its init: + N(0, std)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)


@torch.no_grad()
def logits_of(model, ids):
    return model(input_ids=ids).logits.float().contiguous()


@torch.no_grad()
def greedy(model, ids, steps):
    """Prompt + `steps` argmax tokens, a full forward per step; also the smallest top-2 gap."""
    gap = math.inf
    for _ in range(steps):
        last = model(input_ids=ids).logits[:, -1, :].float()
        top2 = last.topk(2, dim=-1).values
        gap = min(gap, float((top2[:, 0] - top2[:, 1]).min()))
        ids = torch.cat([ids, last.argmax(-1, keepdim=True)], dim=1)
    return ids.contiguous(), gap


def constant_rows(tokens, prompt_len):
    gen = tokens[:, prompt_len:]
    return int((gen == gen[:, :1]).all(dim=1).sum())


def edit_config(path, edit):
    with open(path) as f:
        cfg = json.load(f)
    for k, v in edit.items():
        if v == ABSENT:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    with open(path, "w", encoding="utf-8") as f:  # as PretrainedConfig.to_json_file writes it
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def write_case(spec, out_root, defaults, seed):
    """Write OUT/<name> with `seed`; return its manifest record (settings and checks)."""
    name = spec["name"]
    B = spec.get("batch", defaults.batch)
    T = spec.get("seq_len", defaults.seq_len)
    steps = spec.get("steps", defaults.steps)
    perturb = spec.get("perturb", defaults.perturb)
    d = os.path.join(out_root, name)
    if os.path.exists(d):
        shutil.rmtree(d)
    base_dir, adapter_dir = os.path.join(d, "base"), os.path.join(d, "adapter")

    model = new_model(spec, seed)
    perturb_1d(model, seed + 1, perturb)
    model.save_pretrained(base_dir, safe_serialization=True)
    if spec["edit"]:
        edit_config(os.path.join(base_dir, "config.json"), spec["edit"])
    V = model.config.vocab_size

    g = torch.Generator().manual_seed(seed + 3)
    ids = torch.randint(0, V, (B, T), generator=g, dtype=torch.int64)

    logits_base = logits_of(model, ids)
    greedy_base, gap_base = greedy(model, ids, steps)

    contrast_effects = []  # the same weights under each contrast config: the setting must matter
    for override in spec["contrast"]:
        kw = copy.deepcopy(spec["config"])
        kw.update(copy.deepcopy(override))
        other = AutoModelForCausalLM.from_config(FAMILIES[spec["family"]]["config"](**kw),
                                                 attn_implementation="eager", torch_dtype=torch.float32)
        other.load_state_dict(model.state_dict())
        other.eval()
        contrast_effects.append(float((logits_of(other, greedy_base) - logits_of(model, greedy_base)).abs().max()))
        del other

    torch.manual_seed(seed + 2)
    lcfg = LoraConfig(task_type="CAUSAL_LM", r=spec["r"], lora_alpha=spec["lora_alpha"],
                      use_rslora=spec["use_rslora"], target_modules="all-linear", init_lora_weights=False,
                      lora_dropout=0.0)
    pm = get_peft_model(model, lcfg)
    pm.eval()
    targets = sorted(pm.targeted_module_names)
    logits_adapter = logits_of(pm, ids)
    greedy_adapter, gap_adapter = greedy(pm, ids, steps)
    pm.save_pretrained(adapter_dir)
    merged = pm.merge_and_unload()
    merged.eval()
    logits_merged = logits_of(merged, ids)

    save_file({
        "input_ids": ids,
        "logits_base": logits_base,
        "logits_adapter": logits_adapter,
        "logits_merged": logits_merged,
        "greedy_base": greedy_base,
        "greedy_adapter": greedy_adapter,
    }, os.path.join(d, "expected.safetensors"))
    meta = {"family": spec["family"], "class": FAMILIES[spec["family"]]["cls"], "targets": targets,
            "r": spec["r"], "lora_alpha": spec["lora_alpha"], "use_rslora": spec["use_rslora"],
            "transformers": transformers.__version__}
    with open(os.path.join(d, "case.json"), "w") as f:
        f.write(json.dumps(meta, indent=1))

    # Reload from disk: the files alone must give the same outputs.
    reloaded = AutoModelForCausalLM.from_pretrained(base_dir, attn_implementation="eager").float().eval()
    reload_base = float((logits_of(reloaded, ids) - logits_base).abs().max())
    rpm = PeftModel.from_pretrained(reloaded, adapter_dir).eval()
    reload_adapter = float((logits_of(rpm, ids) - logits_adapter).abs().max())

    checks = {
        "adapter_effect": float((logits_adapter - logits_base).abs().max()),
        "merge_diff": float((logits_merged - logits_adapter).abs().max()),
        "reload_base_diff": reload_base,
        "reload_adapter_diff": reload_adapter,
        "constant_rows_base": constant_rows(greedy_base, T),
        "constant_rows_adapter": constant_rows(greedy_adapter, T),
        "min_top2_gap_base": gap_base,
        "min_top2_gap_adapter": gap_adapter,
        "logits_abs_max": float(logits_base.abs().max()),
        "contrast_effects": contrast_effects,
    }
    problems = []
    if checks["adapter_effect"] <= ADAPTER_MIN_EFFECT:
        problems.append(f"adapter changes logits by only {checks['adapter_effect']:.2e}")
    if checks["merge_diff"] > MERGE_ATOL:
        problems.append(f"merged differs from adapter by {checks['merge_diff']:.2e}")
    if reload_base > RELOAD_ATOL or reload_adapter > RELOAD_ATOL:
        problems.append(f"reloaded files differ (base {reload_base:.2e}, adapter {reload_adapter:.2e})")
    for what in ("base", "adapter"):
        if checks[f"constant_rows_{what}"] == B:
            problems.append(f"degenerate: every greedy_{what} row repeats one token")
    for override, eff in zip(spec["contrast"], contrast_effects):
        if eff <= CONTRAST_MIN_EFFECT:
            problems.append(f"setting barely matters: {json.dumps(override)} changes logits by {eff:.1e}")
    warns = []
    for what in ("base", "adapter"):
        n = checks[f"constant_rows_{what}"]
        if 0 < n < B:
            warns.append(f"{n}/{B} greedy_{what} rows repeat one token")
        if checks[f"min_top2_gap_{what}"] < TIE_GAP:
            warns.append(f"greedy_{what} top-2 gap {checks[f'min_top2_gap_{what}']:.1e} (tie)")

    quality = all(checks[f"constant_rows_{w}"] == 0 and checks[f"min_top2_gap_{w}"] >= ACCEPT_GAP
                  for w in ("base", "adapter"))
    cfg_saved = json.load(open(os.path.join(base_dir, "config.json")))
    record = {k: v for k, v in spec.items() if k not in ("config", "edit")}
    record["quality_ok"] = quality
    record.update(seed=seed, batch=B, seq_len=T, steps=steps, perturb=perturb, config=cfg_saved,
                  config_edits=spec["edit"], checks=checks, problems=problems, warnings=warns)
    return record


# ------------------------------------------------------------------------------------------------
# Reproduction checks against a shipped set.


def st_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    meta = h.pop("__metadata__", None)
    return meta, {k: (v["dtype"], tuple(v["shape"])) for k, v in h.items()}


def compare_to(out_root, ref_root, names):
    """Structure of regenerated visible cases vs the shipped ones. Returns the number of differences."""
    bad = 0
    for name in names:
        a, b = os.path.join(out_root, name), os.path.join(ref_root, name)
        if not os.path.isdir(b):
            print(f"compare {name}: not in {ref_root}")
            continue
        diffs = []
        for rel in ("case.json", "base/config.json", "base/generation_config.json", "adapter/adapter_config.json"):
            ja, jb = json.load(open(os.path.join(a, rel))), json.load(open(os.path.join(b, rel)))
            if rel.endswith("adapter_config.json"):
                if sorted(ja["target_modules"]) != sorted(jb["target_modules"]):
                    diffs.append(f"{rel}: target_modules set differs")
                elif ja["target_modules"] != jb["target_modules"]:
                    diffs.append(f"{rel}: target_modules order differs (PYTHONHASHSEED?)")
                ja, jb = {**ja, "target_modules": None}, {**jb, "target_modules": None}
            if ja != jb:
                keys = sorted(k for k in set(ja) | set(jb) if ja.get(k, ABSENT) != jb.get(k, ABSENT))
                diffs.append(f"{rel}: keys differ: " + ", ".join(f"{k}={ja.get(k, ABSENT)!r} vs {jb.get(k, ABSENT)!r}"
                                                                 for k in keys))
            ta, tb = open(os.path.join(a, rel)).read(), open(os.path.join(b, rel)).read()
            if ja == jb and ta != tb and not rel.endswith("adapter_config.json"):
                diffs.append(f"{rel}: same content, different text layout")
        for rel in ("expected.safetensors", "base/model.safetensors", "adapter/adapter_model.safetensors"):
            ma, ha = st_header(os.path.join(a, rel))
            mb, hb = st_header(os.path.join(b, rel))
            if ma != mb:
                diffs.append(f"{rel}: metadata {ma} vs {mb}")
            if ha != hb:
                only = sorted(set(ha) ^ set(hb))
                shape = sorted(k for k in set(ha) & set(hb) if ha[k] != hb[k])
                diffs.append(f"{rel}: tensors differ (only one side: {only[:6]}, dtype/shape: {shape[:6]})")
        for rel in ("adapter/README.md",):
            if open(os.path.join(a, rel)).read() != open(os.path.join(b, rel)).read():
                diffs.append(f"{rel}: text differs")
        ea, eb = load_file(os.path.join(a, "expected.safetensors")), load_file(os.path.join(b, "expected.safetensors"))
        stats = ", ".join(f"{k} std {float(ea[k].std()):.3f}/{float(eb[k].std()):.3f}"
                          for k in ("logits_base", "logits_adapter"))
        bad += len(diffs)
        print(f"compare {name}: {'same layout' if not diffs else 'DIFFERENT'} ({stats} ours/shipped)")
        for x in diffs:
            print(f"    {x}")
    return bad


def verify_shipped(ref_root):
    """Recompute each shipped case's expected.safetensors from its base/ and adapter/."""
    bad = 0
    for name in sorted(os.listdir(ref_root)):
        d = os.path.join(ref_root, name)
        if not os.path.exists(os.path.join(d, "case.json")):
            continue
        e = load_file(os.path.join(d, "expected.safetensors"))
        ids = e["input_ids"]
        steps = e["greedy_base"].shape[1] - ids.shape[1]
        model = AutoModelForCausalLM.from_pretrained(os.path.join(d, "base"), attn_implementation="eager").float().eval()
        lb = logits_of(model, ids)
        gb, _ = greedy(model, ids, steps)
        pm = PeftModel.from_pretrained(model, os.path.join(d, "adapter")).eval()
        la = logits_of(pm, ids)
        ga, _ = greedy(pm, ids, steps)
        lm = logits_of(pm.merge_and_unload().eval(), ids)
        diffs = {k: float((x - e[k]).abs().max()) for k, x in
                 (("logits_base", lb), ("logits_adapter", la), ("logits_merged", lm))}
        same = torch.equal(gb, e["greedy_base"]) and torch.equal(ga, e["greedy_adapter"])
        ok = same and max(diffs.values()) <= 1e-6
        bad += 0 if ok else 1
        print(f"verify-shipped {name}: {'OK' if ok else 'MISMATCH'} greedy {'equal' if same else 'DIFFERENT'}, "
              + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    return bad


# ------------------------------------------------------------------------------------------------


def write_best(spec, args):
    """write_case with the case's seed, then seed + k * SEED_STRIDE (k < --max-tries) until the
    greedy decoding is non-degenerate and tie-free; if none is, the try with the fewest constant
    rows (then the widest top-2 gap) is written."""
    base_seed = spec["seed"] + args.seed_offset
    best = None
    for k in range(max(1, args.max_tries)):
        rec = write_case(spec, args.out, args, base_seed + k * SEED_STRIDE)
        rec["tries"] = k + 1
        if rec["quality_ok"]:
            return rec
        c = rec["checks"]
        key = (c["constant_rows_base"] + c["constant_rows_adapter"],
               -min(c["min_top2_gap_base"], c["min_top2_gap_adapter"]))
        if best is None or key < best[0]:
            best = (key, rec["seed"])
    if best[1] != rec["seed"]:
        tries = rec["tries"]
        rec = write_case(spec, args.out, args, best[1])
        rec["tries"] = tries
    return rec


def describe(spec, defaults):
    fam_base = FAMILIES[spec["family"]]["base"]
    delta = {k: v for k, v in spec["config"].items() if fam_base.get(k, ABSENT) != v}
    delta.update({k: None for k in fam_base if k not in spec["config"]})
    run = {k: spec.get(k, getattr(defaults, k)) for k in ("batch", "seq_len", "steps")}
    s = (f"{spec['name']:<24} {spec['family']:<8} seed {spec['seed']:<4} r {spec['r']} alpha {spec['lora_alpha']:<3} "
         f"rslora {str(spec['use_rslora']):<5} B {run['batch']} T {run['seq_len']} steps {run['steps']}")
    if delta:
        s += "  " + json.dumps(delta, separators=(",", ":"))
    if spec["edit"]:
        s += "  config.json edits " + json.dumps(spec["edit"])
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"output root, one directory per case (default {DEFAULT_OUT})")
    ap.add_argument("--variants", action="store_true", help="also write the variant cases")
    ap.add_argument("--no-visible", action="store_true", help="skip the six visible-family cases")
    ap.add_argument("--cases", default=None, help="comma-separated fnmatch patterns of case names to write "
                    "(matches the visible, variant and extra lists)")
    ap.add_argument("--skip", default=None, help="comma-separated fnmatch patterns of case names to leave out")
    ap.add_argument("--seed-offset", type=int, default=0, help="added to every case's seed")
    ap.add_argument("--max-tries", type=int, default=8,
                    help=f"seeds tried per case (seed + k*{SEED_STRIDE}) until greedy decoding is non-degenerate "
                         "and tie-free; 1 = the case's seed only (default 8)")
    ap.add_argument("--batch", type=int, default=2, help="prompt batch of cases that set none (default 2)")
    ap.add_argument("--seq-len", type=int, default=19, help="prompt length of cases that set none (default 19)")
    ap.add_argument("--steps", type=int, default=8, help="greedy steps of cases that set none (default 8)")
    ap.add_argument("--perturb", type=float, default=0.1, help="std of the noise added to 1-D params (default 0.1)")
    ap.add_argument("--compare-to", default=None, help="shipped set: compare the regenerated visible cases' layout")
    ap.add_argument("--verify-shipped", default=None, help="shipped set: recompute its expected outputs")
    ap.add_argument("--list", action="store_true", help="print the selected cases and exit")
    ap.add_argument("--strict", action="store_true", help="exit 1 on degenerate greedy rows too")
    ap.add_argument("--verbose", action="store_true", help="keep transformers' and PEFT's warnings")
    args = ap.parse_args()

    if not args.verbose:
        transformers.logging.set_verbosity_error()
        logging.getLogger("peft").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore")

    specs = [] if args.no_visible else list(VISIBLE)
    if args.variants:
        specs += VARIANTS
    if args.cases:
        pats = args.cases.split(",")
        pool = VISIBLE + VARIANTS + EXTRA
        specs = [s for s in pool if any(fnmatch.fnmatch(s["name"], p) for p in pats)]
    if args.skip:
        specs = [s for s in specs if not any(fnmatch.fnmatch(s["name"], p) for p in args.skip.split(","))]
    names = [s["name"] for s in specs]
    if len(set(names)) != len(names):
        sys.exit("duplicate case names")

    if args.list:
        for s in specs:
            print(describe(s, args))
        return 0

    print(f"transformers {transformers.__version__}, peft {peft.__version__}, torch {torch.__version__}; "
          f"{len(specs)} cases -> {args.out}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    t_all = time.time()
    records, failed, hard = [], [], 0
    for s in specs:
        t0 = time.time()
        try:
            rec = write_best(s, args)
        except Exception as exc:  # transformers / PEFT failed on this configuration
            failed.append((s["name"], f"{type(exc).__name__}: {exc}"))
            shutil.rmtree(os.path.join(args.out, s["name"]), ignore_errors=True)
            print(f"FAILED {s['name']}: {type(exc).__name__}: {exc}", flush=True)
            if args.verbose:
                traceback.print_exc()
            continue
        rec["seconds"] = round(time.time() - t0, 2)
        records.append(rec)
        c = rec["checks"]
        degenerate = any(p.startswith("degenerate") for p in rec["problems"])
        hard_problem = [p for p in rec["problems"] if not p.startswith("degenerate")]
        hard += 1 if hard_problem or (args.strict and degenerate) else 0
        status = "FAIL" if hard_problem else ("DEGENERATE" if degenerate else ("warn" if rec["warnings"] else "ok"))
        contrast = "" if not c["contrast_effects"] else \
            ", setting effect " + "/".join(f"{e:.1e}" for e in c["contrast_effects"])
        print(f"{status:<10} {s['name']:<24} seed {rec['seed']} (try {rec['tries']}), "
              f"adapter effect {c['adapter_effect']:.3f}{contrast}, merge {c['merge_diff']:.1e}, "
              f"reload {max(c['reload_base_diff'], c['reload_adapter_diff']):.1e}, const rows "
              f"{c['constant_rows_base']}/{c['constant_rows_adapter']} of {rec['batch']}, top2 gap "
              f"{min(c['min_top2_gap_base'], c['min_top2_gap_adapter']):.1e}, |logits| {c['logits_abs_max']:.2f}, "
              f"{rec['seconds']:.1f}s" + "".join(f"\n           - {p}" for p in rec["problems"] + rec["warnings"]),
              flush=True)

    manifest_path = os.path.join(args.out, "manifest.json")
    old = {}
    if os.path.exists(manifest_path):  # keep entries of cases written by an earlier run into the same root
        try:
            old = {r["name"]: r for r in json.load(open(manifest_path))["cases"]}
        except (ValueError, KeyError):
            old = {}
    for r in records:
        old[r["name"]] = r
    for name, _ in failed:
        old.pop(name, None)
    kept = [old[n] for n in sorted(old) if os.path.isdir(os.path.join(args.out, n))]
    with open(manifest_path, "w") as f:
        json.dump({"generator": "tests/python/make_hf_model_cases.py", "transformers": transformers.__version__,
                   "peft": peft.__version__, "torch": torch.__version__, "cases": kept,
                   "failed": [{"name": n, "error": e} for n, e in failed]}, f, indent=1)

    bad = 0
    if args.compare_to:
        bad += compare_to(args.out, args.compare_to, [s["name"] for s in VISIBLE if s["name"] in
                                                        {r["name"] for r in records}])
    if args.verify_shipped:
        bad += verify_shipped(args.verify_shipped)
    print(f"{len(records)} written, {len(failed)} failed in transformers/PEFT, {hard} with check failures; "
          f"{time.time() - t_all:.1f}s", flush=True)
    for n, e in failed:
        print(f"  transformers/PEFT failure: {n}: {e}")
    return 1 if (failed or hard or bad) else 0


if __name__ == "__main__":
    sys.exit(main())
