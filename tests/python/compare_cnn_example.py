"""Loads what examples/lora_cnn.cpp wrote onto the same torch.nn architecture with Python PEFT and
compares the logits.  Run with the oracle (../shared/oracle):

    source ../shared/oracle/env.sh
    build/examples/peft_lora_cnn /tmp/cnn lora   # or: ... /tmp/cnn_dora dora
    "$ORACLE_PYTHON" tests/python/compare_cnn_example.py /tmp/cnn [--tol 1e-5]

Every size comes from the files (weight shapes), nothing is assumed.  Exit status 0 when the
largest absolute difference is within --tol.
"""
import argparse
import json
import sys

import torch
from torch import nn
from safetensors.torch import load_file
from peft import PeftModel


class GridCnn(nn.Module):
    """The C++ example's GridCnn: ids [B, H, W] -> emb -> [B, dim, H, W] -> convs -> mean -> head."""

    def __init__(self, vocab, dim, channels, classes, k):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.features = nn.Sequential(
            nn.Conv2d(dim, channels, k, padding=k // 2), nn.ReLU(),
            nn.Conv2d(channels, channels, k, padding=k // 2), nn.ReLU())
        self.head = nn.Linear(channels, classes)

    def forward(self, ids):
        x = self.emb(ids).permute(0, 3, 1, 2)
        return self.head(self.features(x).mean(dim=(2, 3)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", help="the example's output directory")
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()

    base = load_file(f"{args.out}/base/model.safetensors")
    vocab, dim = base["emb.weight"].shape
    channels, _, k, _ = base["features.0.weight"].shape
    classes = base["head.weight"].shape[0]
    model = GridCnn(vocab, dim, channels, classes, k)
    model.load_state_dict(base, strict=True)

    pm = PeftModel.from_pretrained(model, f"{args.out}/adapter")
    pm.eval()
    with open(f"{args.out}/adapter/adapter_config.json") as f:
        cfg = json.load(f)
    io = load_file(f"{args.out}/io.safetensors")
    with torch.no_grad():
        logits = pm(io["input_ids"])
        with pm.disable_adapter():
            base_logits = pm(io["input_ids"])
    # The LoRA factors must have trained (B != 0), or the comparison would only check the head.
    for name, module in pm.named_modules():
        if hasattr(module, "get_delta_weight") and "default" in getattr(module, "lora_A", {}).keys() | getattr(
                module, "lora_embedding_A", {}).keys():
            delta = module.get_delta_weight("default")
            print(f"  {name.removeprefix('base_model.model.')}: {type(module).__name__}, max |delta W| = "
                  f"{delta.abs().max().item():.3e}")
            if delta.abs().max().item() == 0:
                print("  an adapter with a zero delta proves nothing")
                return 1
    diff = (logits - io["logits"]).abs().max().item()
    moved = (base_logits - io["logits"]).abs().max().item()
    print(f"PEFT loaded {args.out}/adapter (use_dora={cfg.get('use_dora')}, targets={sorted(cfg['target_modules'])}, "
          f"modules_to_save={cfg.get('modules_to_save')}): logits {tuple(logits.shape)}")
    print(f"max |PEFT - peft-cpp| = {diff:.3e}   (the adapter moves the logits by up to {moved:.3e})")
    if moved <= 10 * args.tol:
        print("the adapter does not change the outputs: the comparison would prove nothing")
        return 1
    return 0 if diff <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
