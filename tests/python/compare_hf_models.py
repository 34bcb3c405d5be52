#!/usr/bin/env python3
"""Compare the C++ reference decoders with Hugging Face transformers, both directions.

    python3 tests/python/compare_hf_models.py BUILD_DIR

Needs torch, transformers (4.4x or 5.x) and safetensors; no network. BUILD_DIR holds
tests/peft_hf_logits (built with the tests). Prints one PASS/FAIL line per case and exits 1 when
any case fails. Runs in well under a minute (tiny random models, CPU, fp32).

1. transformers -> C++: random tiny GPT2LMHeadModel / LlamaForCausalLM (GQA, two rope_theta
   values, tied and untied, rope scaling), save_pretrained as safetensors, logits from
   `peft_hf_logits DIR ids out` against the model's own logits (atol 1e-4).
2. C++ -> transformers: `peft_hf_logits --save-builtin NAME DIR` (save_causal_lm), loaded with
   AutoModelForCausalLM (no missing/unexpected keys), logits against peft_hf_logits on DIR.
"""

import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

ATOL = 1e-4
failures = 0


def report(name, ok, detail):
    global failures
    failures += 0 if ok else 1
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


def cpp_logits(binary, model_dir, ids, work):
    ids_path = os.path.join(work, "ids.safetensors")
    out_path = os.path.join(work, "out.safetensors")
    save_file({"input_ids": ids.contiguous()}, ids_path)
    run = subprocess.run([binary, model_dir, ids_path, out_path], capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        raise RuntimeError(f"peft_hf_logits failed ({run.returncode}): {run.stderr.strip()}")
    return load_file(out_path)["logits"]


def save_hf(model, path):
    try:
        model.save_pretrained(path, safe_serialization=True)
    except TypeError:  # transformers 5 always writes safetensors
        model.save_pretrained(path)
    if not os.path.exists(os.path.join(path, "model.safetensors")) and not os.path.exists(
        os.path.join(path, "model.safetensors.index.json")
    ):
        raise RuntimeError(f"save_pretrained wrote no safetensors file in {path}: {os.listdir(path)}")


def randomise(model, seed):
    """Every parameter random (norm weights around 1), so no block is an identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.05
            p.copy_(1.0 + noise if ("ln_" in name or "norm" in name) and name.endswith("weight") else noise * 2)


def hf_to_cpp_cases():
    common_gpt2 = dict(vocab_size=97, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    yield "gpt2 gelu_new tied", GPT2LMHeadModel(GPT2Config(activation_function="gelu_new", **common_gpt2))
    yield "gpt2 relu untied, inverse layer idx scaling, n_inner 48", GPT2LMHeadModel(GPT2Config(
        activation_function="relu", tie_word_embeddings=False, scale_attn_by_inverse_layer_idx=True, n_inner=48,
        layer_norm_epsilon=1e-3, **common_gpt2))
    common_llama = dict(vocab_size=101, hidden_size=32, intermediate_size=56, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=128, rms_norm_eps=1e-5)
    yield "llama GQA(4q/2kv) theta 1e4 untied", LlamaForCausalLM(LlamaConfig(
        num_key_value_heads=2, rope_theta=10000.0, tie_word_embeddings=False, **common_llama))
    yield "llama GQA(4q/1kv) theta 5e5 tied", LlamaForCausalLM(LlamaConfig(
        num_key_value_heads=1, rope_theta=500000.0, tie_word_embeddings=True, **common_llama))
    yield "llama MHA biases head_dim 16", LlamaForCausalLM(LlamaConfig(
        num_key_value_heads=4, head_dim=16, attention_bias=True, mlp_bias=True, tie_word_embeddings=False,
        **common_llama))
    yield "llama rope llama3 scaling", LlamaForCausalLM(LlamaConfig(
        num_key_value_heads=2, rope_theta=500000.0, tie_word_embeddings=False,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 16}, **common_llama))


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    binary = os.path.join(sys.argv[1], "tests", "peft_hf_logits")
    if not os.path.exists(binary):
        print(f"FAIL setup: {binary} not found (build the peft_hf_logits target)")
        return 1
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as work:
        # 1. transformers -> C++
        for i, (name, model) in enumerate(hf_to_cpp_cases()):
            try:
                randomise(model, i)
                model.eval()
                path = os.path.join(work, f"hf{i}")
                save_hf(model, path)
                ids = torch.randint(model.config.vocab_size, (2, 23), generator=torch.Generator().manual_seed(i))
                with torch.no_grad():
                    want = model(ids).logits.float()
                got = cpp_logits(binary, path, ids, work)
                diff = (got - want).abs().max().item()
                report(f"hf->cpp {name}", got.shape == want.shape and diff <= ATOL, f"max |diff| {diff:.2e}")
            except Exception as e:  # one failing case must not hide the others
                report(f"hf->cpp {name}", False, repr(e))

        # 2. C++ -> transformers
        for name in ("tiny-gpt2", "tiny-llama"):
            try:
                path = os.path.join(work, name)
                run = subprocess.run([binary, "--save-builtin", name, path], capture_output=True, text=True, timeout=60)
                if run.returncode != 0:
                    raise RuntimeError(run.stderr.strip())
                model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
                model = model.float().eval()
                bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
                ids = torch.randint(model.config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(7))
                with torch.no_grad():
                    want = model(ids).logits.float()
                got = cpp_logits(binary, path, ids, work)
                diff = (got - want).abs().max().item()
                report(f"cpp->hf {name} ({type(model).__name__})", not bad and diff <= ATOL,
                       f"max |diff| {diff:.2e}" + (f", loading info {bad}" if bad else ""))
            except Exception as e:
                report(f"cpp->hf {name}", False, repr(e))
    print(f"{'FAIL' if failures else 'PASS'}: {failures} failing case(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
