#!/usr/bin/env python3
"""Synthetic checkpoint for timing peft-merge (standard library only, no numpy/torch).

  python3 scripts/merge_bench.py DIR [--layers 4] [--dim 4096] [--rank 16]
  time build/peft-merge --base DIR/base --adapter DIR/adapter --out DIR/merged --force

Writes DIR/base/model.safetensors (+ config.json): `layers` Llama-style blocks with q/k/v/o
projections [dim, dim] float32 (values repeat a 1M-element N(0, 0.02) block), and DIR/adapter:
a rank-`rank` LoRA on q_proj and v_proj of every layer.
"""
import argparse, array, json, os, random, struct


def write_safetensors(path, tensors):
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, data in tensors:
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for _, _, data in tensors:
            f.write(data)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dim", type=int, default=4096)
    p.add_argument("--rank", type=int, default=16)
    a = p.parse_args()
    rng = random.Random(0)
    block = array.array("f", [rng.gauss(0, 0.02) for _ in range(1 << 20)]).tobytes()
    n = a.dim * a.dim * 4
    weight = (block * (n // len(block) + 1))[:n]
    os.makedirs(os.path.join(a.dir, "base"), exist_ok=True)
    os.makedirs(os.path.join(a.dir, "adapter"), exist_ok=True)
    base, lora = [], []
    small = lambda k: array.array("f", [rng.gauss(0, 0.02) for _ in range(k)]).tobytes()
    for i in range(a.layers):
        for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
            key = f"model.layers.{i}.self_attn.{m}"
            base.append((key + ".weight", [a.dim, a.dim], weight))
            if m in ("q_proj", "v_proj"):
                lora.append((f"base_model.model.{key}.lora_A.weight", [a.rank, a.dim], small(a.rank * a.dim)))
                lora.append((f"base_model.model.{key}.lora_B.weight", [a.dim, a.rank], small(a.rank * a.dim)))
    write_safetensors(os.path.join(a.dir, "base", "model.safetensors"), base)
    with open(os.path.join(a.dir, "base", "config.json"), "w") as f:
        json.dump({"model_type": "llama", "hidden_size": a.dim, "num_hidden_layers": a.layers,
                   "torch_dtype": "float32"}, f, indent=2)
    write_safetensors(os.path.join(a.dir, "adapter", "adapter_model.safetensors"), lora)
    with open(os.path.join(a.dir, "adapter", "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": a.rank, "lora_alpha": 2 * a.rank,
                   "target_modules": ["q_proj", "v_proj"]}, f, indent=2)


if __name__ == "__main__":
    main()
