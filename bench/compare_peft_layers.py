#!/usr/bin/env python3
"""Python PEFT's LoRA / DoRA on nn.Conv2d and nn.Embedding, timed like peft_bench's
bench_conv_embedding.cpp, side by side with ours (issue 14).

Conv2d 64->64, 3x3, padding 1, input [32, 64, 32, 32] (one training step: forward + backward with
the input gradient, base frozen); Embedding 32000 x 1024, ids [8, 512] (a frozen embedding has
nothing to back-propagate, so its step is the lookup; "full" trains the whole table). Layers are
stepped in turn inside one loop in a rotating order; figures are medians of per-iteration ratios.
With `--ours FILE` (peft_bench --benchmark_filter='conv2d|embedding' --benchmark_out=FILE
--benchmark_out_format=json) our ratios are printed next to PEFT's.

  python3 bench/compare_peft_layers.py [--ours ours.json] [--device cuda --dtype bf16]

Needs torch and peft; exits with status 2 and a message without them.
"""

import argparse
import json
import statistics
import sys
import time


def load_ours(path):
    """{(where, layer, variant): counters} from peft_bench's JSON (conv2d / embedding paired steps)."""
    with open(path) as f:
        data = json.load(f)
    out = {}
    for b in data.get("benchmarks", []):
        parts = (b.get("run_name") or b.get("name", "")).split("/")
        # <where>/paired_step/<layer>/<shape>/<input>/r<r>/<variant>
        if len(parts) >= 7 and parts[1] == "paired_step" and parts[2] in ("conv2d", "embedding"):
            out[(parts[0], parts[2], parts[6])] = {k: b.get(k) for k in ("x_frozen", "x_lora", "x_full")}
    return out


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--iters", type=int, default=0, help="paired iterations (default: 15 CPU, 50 CUDA)")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--ours", help="peft_bench JSON output to print beside PEFT's figures")
    p.add_argument("--threads", type=int, default=0,
                   help="torch.set_num_threads (default: torch's; LibTorch in peft_bench uses one per core)")
    args = p.parse_args(argv)
    try:
        import torch
        from torch import nn
        import peft
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        print(f"compare_peft_layers.py: needs torch and peft ({e})", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.float32 if args.dtype == "fp32" else torch.bfloat16
    iters = args.iters or (50 if args.device == "cuda" else 15)
    where = "cuda_bf16" if args.device == "cuda" else "cpu_fp32"
    r = args.rank

    class Wrap(nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.layer = layer

        def forward(self, x):
            return self.layer(x)

    def make(base, kind):
        torch.manual_seed(0)
        m = Wrap(base()).to(device=device, dtype=dtype)
        for prm in m.layer.parameters():
            prm.requires_grad_(kind == "full")
        if kind in ("frozen", "full"):
            return m.layer
        pm = get_peft_model(m, LoraConfig(target_modules=["layer"], r=r, lora_alpha=2 * r, use_dora=kind == "dora"))
        layer = pm.base_model.model.layer
        with torch.no_grad():
            for name, prm in layer.named_parameters():
                if "lora_B" in name or "lora_embedding_B" in name:
                    prm.normal_(0, 0.02)
        layer.train()
        return layer

    def step_ms(layer, x, g):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        y = layer(x)
        if y.requires_grad:
            y.backward(g)
        if device.type == "cuda":
            torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 1e3
        for prm in layer.parameters():
            prm.grad = None
        if x.is_floating_point():
            x.grad = None
        return ms

    torch.manual_seed(1)
    conv_x = torch.randn(32, 64, 32, 32, device=device, dtype=dtype).requires_grad_(True)
    conv_g = torch.randn(32, 64, 32, 32, device=device, dtype=dtype)
    ids = torch.randint(0, 32000, (8, 512), device=device)
    emb_g = torch.randn(8, 512, 1024, device=device, dtype=dtype)
    cases = [("conv2d", lambda: nn.Conv2d(64, 64, 3, padding=1), conv_x, conv_g, ["frozen", "lora"]),
             ("embedding", lambda: nn.Embedding(32000, 1024), ids, emb_g, ["frozen", "lora", "full"])]
    ours = load_ours(args.ours) if args.ours else {}
    print(f"# PEFT {peft.__version__}, torch {torch.__version__}, {args.device} {args.dtype}, "
          f"torch threads {torch.get_num_threads()}, {iters} paired iterations, r {r}")
    print(f"{'layer':<10} {'variant':<7} {'PEFT ms':>8} {'PEFT x frozen':>13} {'PEFT x lora':>11} {'PEFT x full':>11} "
          f"{'ours x frozen':>13} {'ours x lora':>11} {'ours x full':>11}")

    def fmt(v, w):
        return f"{v:>{w}.3f}" if isinstance(v, (int, float)) and v > 0 else f"{'-':>{w}}"

    for name, base, x, g, refs in cases:
        for variant in ("lora", "dora"):
            kinds = refs + [variant]
            layers = [make(base, k) for k in kinds]
            for layer in layers:
                step_ms(layer, x, g)  # warm-up
            ratios = {k: [] for k in refs}
            times = []
            for it in range(iters):
                t = [0.0] * len(layers)
                for k in range(len(layers)):
                    i = (it + k) % len(layers)
                    t[i] = step_ms(layers[i], x, g)
                times.append(t[-1])
                for i, k in enumerate(refs):
                    ratios[k].append(t[-1] / t[i])
            med = {k: statistics.median(v) for k, v in ratios.items()}
            o = ours.get((where, name, variant), {})
            print(f"{name:<10} {variant:<7} {statistics.median(times):>8.1f} {fmt(med.get('frozen'), 13)} "
                  f"{fmt(med.get('lora'), 11)} {fmt(med.get('full'), 11)} {fmt(o.get('x_frozen'), 13)} "
                  f"{fmt(o.get('x_lora'), 11)} {fmt(o.get('x_full'), 11)}", flush=True)
            del layers
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
