"""Write a transformers-made ~0.5B Llama checkpoint in bf16 with 3 shards, for bench_load.

    source /work/shared/oracle/env.sh
    "$ORACLE_PYTHON" bench/make_llama_checkpoint.py /tmp/llama-0.5b

Config: hidden 1536, 16 layers, 12 heads (head_dim 128, no GQA), SwiGLU 3072, vocab 32000,
untied lm_head: 475.8M parameters, 0.95 GB of bf16. Weights are transformers' random init
(seed 0); max_shard_size 400MB gives 3 shards + model.safetensors.index.json.
With --time-load DIR it instead loads DIR with AutoModelForCausalLM.from_pretrained in bf16 and
prints the wall time and peak RSS (the figure bench/RESULTS.md compares against).
"""

import os
import resource
import sys
import time


def write(out):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=32000,
        hidden_size=1536,
        intermediate_size=3072,
        num_hidden_layers=16,
        num_attention_heads=12,
        num_key_value_heads=12,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        torch_dtype="bfloat16",
    )
    t0 = time.time()
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out, max_shard_size="400MB", safe_serialization=True)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out) if f.endswith(".safetensors"))
    print(f"wrote {out}: {n} parameters, {size} bytes of safetensors, {time.time() - t0:.1f} s")


def time_load(path):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.bfloat16)
    t1 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB -> MiB
    print(f"transformers load: {t1 - t0:.2f} s, peak RSS {rss:.0f} MiB "
          f"({sum(p.numel() for p in model.parameters())} parameters)")
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3, 4]])).logits
    print(f"forward on 4 tokens: logits {tuple(logits.shape)} {logits.dtype}, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0:.0f} MiB")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--time-load":
        time_load(sys.argv[2])
    elif len(sys.argv) == 2:
        write(sys.argv[1])
    else:
        sys.exit(__doc__)
