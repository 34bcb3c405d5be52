#!/usr/bin/env python3
"""Python PEFT's LoRA layer cost on the shapes of peft_bench, side by side with ours (issue 6).

For every shape / rank / variant this times one training step (forward + backward with the input
gradient, base weight frozen) of a plain frozen nn.Linear, PEFT's LoRA layer (dropout 0) and the
variant, stepped in turn inside one loop in a rotating order, exactly like peft_bench's
`paired_step`; the figures are medians of the per-iteration ratios. With `--ours FILE` (peft_bench's
`--benchmark_out=FILE --benchmark_out_format=json`) it prints our `paired_step` ratios next to PEFT's.

  python3 bench/compare_peft.py                                  # CPU fp32, 2048x2048, r 16
  python3 bench/compare_peft.py --device cuda --dtype bf16 --ours ours.json
  python3 bench/compare_peft.py --shapes 2048x2048,4096x4096,4096x11008 --ranks 8,16,64

Needs torch and peft (`pip install torch peft`); exits with status 2 and a message without them.
"""

import argparse
import json
import statistics
import sys
import time


VARIANTS = [  # (name as in peft_bench, LoraConfig kwargs)
    ("lora", dict()),
    ("lora_dropout0.1", dict(lora_dropout=0.1)),
    ("rslora", dict(use_rslora=True)),
    ("dora", dict(use_dora=True)),
]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--shapes", default="2048x2048", help="comma-separated INxOUT (default 2048x2048)")
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--ranks", default="16", help="comma-separated ranks (default 16)")
    p.add_argument("--variants", default=",".join(v for v, _ in VARIANTS))
    p.add_argument("--iters", type=int, default=0, help="paired iterations (default: 15 CPU, 50 CUDA)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--ours", help="peft_bench JSON output to compare with")
    p.add_argument("--json-out", help="write PEFT's figures here as JSON")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def load_ours(path):
    """{(where, 'INxOUT/tT/rR', variant): {x_frozen, x_lora, peak_x_frozen}} from peft_bench JSON."""
    with open(path) as f:
        data = json.load(f)
    out = {}
    for b in data.get("benchmarks", []):
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = b.get("run_name") or b.get("name", "")
        parts = name.split("/")
        # <where>/paired_step/<in>x<out>/t<tokens>/r<r>/<variant>
        if len(parts) < 6 or parts[1] != "paired_step" or "x_frozen" not in b:
            continue
        key = (parts[0], "/".join(parts[2:5]), parts[5])
        if key in out and b.get("run_type") != "aggregate":
            continue  # keep the median aggregate when repetitions were run
        out[key] = {k: b.get(k) for k in ("x_frozen", "x_lora", "peak_x_frozen", "extra_saved_MB")}
    return out


def main(argv):
    args = parse_args(argv)
    try:
        import torch
        from torch import nn
        import peft
        from peft import LoraConfig, get_peft_model
    except ImportError as e:  # the CPU build machine has neither
        print(f"compare_peft.py: needs torch and peft ({e})", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("compare_peft.py: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    dtype = torch.float32 if args.dtype == "fp32" else torch.bfloat16
    iters = args.iters or (50 if args.device == "cuda" else 15)
    where = ("cuda_bf16" if args.device == "cuda" else "cpu_fp32") if (args.device, args.dtype) in (
        ("cuda", "bf16"), ("cpu", "fp32")) else f"{args.device}_{args.dtype}"
    wanted = [v for v in args.variants.split(",") if v]
    unknown = [v for v in wanted if v not in dict(VARIANTS)]
    if unknown:
        print(f"compare_peft.py: unknown variant(s) {unknown}; known: {[v for v, _ in VARIANTS]}", file=sys.stderr)
        return 2

    class Wrap(nn.Module):
        def __init__(self, d_in, d_out):
            super().__init__()
            self.proj = nn.Linear(d_in, d_out, bias=False)

        def forward(self, x):
            return self.proj(x)

    def make(d_in, d_out, r, kwargs):
        torch.manual_seed(args.seed)
        m = Wrap(d_in, d_out).to(device=device, dtype=dtype)
        m.proj.weight.requires_grad_(False)
        if kwargs is None:
            return m.proj  # the frozen baseline: a plain nn.Linear
        cfg = LoraConfig(target_modules=["proj"], r=r, lora_alpha=2 * r, **kwargs)
        pm = get_peft_model(m, cfg)  # autocast_adapter_dtype: fp32 adapters on a bf16 base, as ours
        layer = pm.base_model.model.proj
        with torch.no_grad():
            layer.lora_B["default"].weight.normal_(0, 0.02)  # a trained adapter, not B = 0
        layer.train()
        return layer

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step_ms(layer, x, g):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            layer(x).backward(g)
            end.record()
            torch.cuda.synchronize()
            ms = start.elapsed_time(end)
        else:
            t0 = time.perf_counter()
            layer(x).backward(g)
            ms = (time.perf_counter() - t0) * 1e3
        for p in layer.parameters():
            p.grad = None
        x.grad = None
        return ms

    def peak_bytes(layer, x, g):
        if device.type != "cuda":
            return None
        sync()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step_ms(layer, x, g)
        return torch.cuda.max_memory_allocated() - before

    ours = load_ours(args.ours) if args.ours else {}
    print(f"# PEFT {peft.__version__}, torch {torch.__version__}, {args.device} {args.dtype}, "
          f"torch threads {torch.get_num_threads()}, {iters} paired iterations (median of per-iteration ratios)")
    if device.type == "cuda":
        print(f"# GPU: {torch.cuda.get_device_name(0)}")
    header = f"{'shape':<22} {'variant':<18} {'PEFT x frozen':>13} {'PEFT x lora':>11} {'ours x frozen':>13} " \
             f"{'ours x lora':>11} {'PEFT peak x frz':>15} {'ours peak x frz':>15}"
    print(header)
    results = []
    for shape in args.shapes.split(","):
        d_in, d_out = (int(v) for v in shape.lower().split("x"))
        for r in (int(v) for v in args.ranks.split(",")):
            group = f"{d_in}x{d_out}/t{args.tokens}/r{r}"
            torch.manual_seed(args.seed + 1)
            x = torch.randn(args.tokens, d_in, device=device, dtype=dtype).requires_grad_(True)
            g = torch.randn(args.tokens, d_out, device=device, dtype=dtype)
            frozen = make(d_in, d_out, r, None)
            lora = make(d_in, d_out, r, dict())
            for vname in wanted:
                variant = lora if vname == "lora" else make(d_in, d_out, r, dict(VARIANTS)[vname])
                layers = [frozen, lora, variant]
                for _ in range(args.warmup):
                    for layer in layers:
                        step_ms(layer, x, g)
                vs_frozen, vs_lora = [], []
                for it in range(iters):
                    t = [0.0, 0.0, 0.0]
                    for k in range(3):
                        i = (it + k) % 3
                        t[i] = step_ms(layers[i], x, g)
                    vs_frozen.append(t[2] / t[0])
                    vs_lora.append(t[2] / t[1])
                pf, pv = peak_bytes(frozen, x, g), peak_bytes(variant, x, g)
                row = {"group": group, "variant": vname, "x_frozen": statistics.median(vs_frozen),
                       "x_lora": statistics.median(vs_lora),
                       "peak_x_frozen": (pv / pf) if pf else None}
                results.append(row)
                o = ours.get((where, group, vname), {})

                def fmt(v, w):
                    return f"{v:>{w}.3f}" if isinstance(v, (int, float)) and v > 0 else f"{'-':>{w}}"

                print(f"{group:<22} {vname:<18} {fmt(row['x_frozen'], 13)} {fmt(row['x_lora'], 11)} "
                      f"{fmt(o.get('x_frozen'), 13)} {fmt(o.get('x_lora'), 11)} "
                      f"{fmt(row['peak_x_frozen'], 15)} {fmt(o.get('peak_x_frozen'), 15)}", flush=True)
                del variant
            del frozen, lora, x, g
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"peft": peft.__version__, "torch": torch.__version__, "device": args.device,
                       "dtype": args.dtype, "iters": iters, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
