"""Whole training steps, peft-finetune against Python PEFT + transformers on the same LibTorch.

    source ../shared/oracle/env.sh
    "$ORACLE_PYTHON" bench/compare_step.py --peft-finetune build/peft-finetune \
        [--shape h512 | tiny] [--steps 20] [--reps 2] [--threads 1]

Both sides train the same transformers-written Llama checkpoint (fp32, made here with seed 0),
LoRA r 16 / alpha 32 on all linear layers (lm_head excluded), AdamW lr 1e-3, clipping at 1.0,
batch B x seq T of token ids below 257 (peft-finetune's byte tokenizer; speed does not depend on
the ids), dropout 0, one process each with the same thread count. Each side runs in its own
process, alternately (C++, Python, C++, Python, ...): tokens/s over all training steps (C++: the
summary's tokens / the last metrics.jsonl elapsed_s; Python: the same count over the same loop)
and the process's peak RSS (wait4's ru_maxrss), minus the RSS after loading the model where the
side reports it. Prints one row per run, then the ratios of the medians (the table of
bench/RESULTS.md). Shapes:
    h512: hidden 512, 4 layers, 8 heads, SwiGLU 1376, vocab 32000, seq 256, batch 4
    tiny: hidden 128, 2 layers, 4 heads, SwiGLU 344, vocab 32000, seq 256, batch 4
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

SHAPES = {
    "h512": dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=1376),
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=344),
}


def make_checkpoint(out, shape, vocab):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, max_position_embeddings=2048, torch_dtype="float32", **SHAPES[shape])
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)


def python_side(args):
    """Runs in its own process: prints one JSON line."""
    import resource

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(args.base, torch_dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    loaded_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ids = torch.randint(0, 257, (args.steps, args.batch, args.seq))
    t0 = time.perf_counter()
    for s in range(args.steps):
        out = model(input_ids=ids[s], labels=ids[s])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    secs = time.perf_counter() - t0
    print(json.dumps({"tokens": args.steps * args.batch * args.seq, "secs": secs, "loaded_kib": loaded_kib}))


def run_measured(cmd, env=None):
    """(stdout, stderr, rusage) of one child process (wait4 before Popen reaps it)."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({p.returncode}):\n{out}\n{err}")
    return out, err, usage


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peft-finetune", required=False)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="h512")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--python-side", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.python_side:
        return python_side(args)
    if not args.peft_finetune:
        ap.error("--peft-finetune is required")
    tool = os.path.realpath(args.peft_finetune)
    work = tempfile.mkdtemp(prefix="compare_step_")
    base = os.path.join(work, "base")
    make_checkpoint(base, args.shape, args.vocab)
    with open(os.path.join(work, "data.txt"), "w") as f:
        for i in range(3000):
            f.write(f"Document {i}: the quick brown fox jumps over the lazy dog {i % 7} times, "
                    f"then it rests for {i % 5} minutes and runs on.\n\n")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    rows = {"peft-cpp": [], "python": []}
    for rep in range(args.reps):
        out_dir = os.path.join(work, f"cpp{rep}")
        yaml = os.path.join(work, f"cpp{rep}.yaml")
        with open(yaml, "w") as f:
            f.write(f"base_model: {base}\noutput_dir: {out_dir}\n"
                    f"data: {{file: {os.path.join(work, 'data.txt')}, heldout_fraction: 0.05}}\n"
                    f"training: {{steps: {args.steps}, batch_size: {args.batch}, seq_len: {args.seq}, lr: 1e-3, "
                    f"warmup_steps: 0, seed: 0, threads: {args.threads}, eval_every: 0, eval_batches: 1, "
                    f"save_every: 0, log_every: 1, max_grad_norm: 1.0}}\n"
                    f"lora: {{r: 16, lora_alpha: 32, lora_dropout: 0.0, target_modules: all-linear}}\n"
                    )
        out, err, usage = run_measured([tool, "--config", yaml], env)
        text = out + err
        tokens = int(re.search(r"^  steps: *\d+, (\d+) tokens,", text, re.M).group(1))
        with open(os.path.join(out_dir, "metrics.jsonl")) as f:
            secs = [json.loads(l) for l in f if l.strip()][-1]["elapsed_s"]
        rows["peft-cpp"].append({"tokens_s": tokens / secs, "peak_mib": usage.ru_maxrss / 1024})
        out, err, usage = run_measured([sys.executable, __file__, "--python-side", "--base", base, "--steps",
                                        str(args.steps), "--seq", str(args.seq), "--batch", str(args.batch),
                                        "--threads", str(args.threads)], env)
        r = json.loads(out.strip().splitlines()[-1])
        rows["python"].append({"tokens_s": r["tokens"] / r["secs"], "peak_mib": usage.ru_maxrss / 1024,
                               "loaded_mib": r["loaded_kib"] / 1024})
        for side in rows:
            x = rows[side][-1]
            print(f"rep {rep} {side:9s} {x['tokens_s']:9.0f} tokens/s  peak RSS {x['peak_mib']:7.1f} MiB", flush=True)
    med = {s: statistics.median(x["tokens_s"] for x in rows[s]) for s in rows}
    peak = {s: statistics.median(x["peak_mib"] for x in rows[s]) for s in rows}
    print(f"\nshape {args.shape} (vocab {args.vocab}), B {args.batch} x T {args.seq}, {args.threads} thread(s), "
          f"{args.steps} steps x {args.reps} reps")
    print("| side | tokens/s (median) | peak RSS MiB (median) |\n|---|---|---|")
    for s in rows:
        print(f"| {s} | {med[s]:.0f} | {peak[s]:.0f} |")
    print(f"\npeft-cpp / Python PEFT tokens/s: {med['peft-cpp'] / med['python']:.3f}x; "
          f"peak RSS: {peak['peft-cpp'] / peak['python']:.3f}x")


if __name__ == "__main__":
    main()
