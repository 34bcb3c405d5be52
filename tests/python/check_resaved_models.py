#!/usr/bin/env python3
"""Reverse direction for whole adapters: load the adapters peft-cpp re-saved
(`peft_conformance --resave OUT` writes OUT/<case>/ in PEFT's layout) with Python PEFT onto the
case's base model and check they reproduce the outputs real PEFT 0.20.0 recorded
(expected.safetensors: out_adapter, out_adapter.<names>, out_disabled, out_merged, merged.*).

usage: check_resaved_models.py OUT FIXTURES_PEFT_DIR    (PASS/FAIL/SKIP lines and a summary;
                                                          exit 1 if anything failed)

Models are rebuilt from case.json `model_dims` as docs/conformance.md defines them. Cases whose
init rewrites the base (pissa, olora, corda) use docs/file-format.md recipe 2: the targeted weights are
replaced by `init.<m>.base_weight` and the adapter loads with init_lora_weights=True.
"""
import json
import math
import sys
import warnings
from pathlib import Path

import torch
from torch import nn
from safetensors.torch import load_file

import peft
from peft import LoraConfig, PeftModel

REWRITING = ("pissa", "olora", "corda")


def causal_attention(q, k, v):
    t = q.shape[-2]
    s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    m = torch.full((t, t), float("-inf"), dtype=q.dtype, device=q.device).triu(1)
    return torch.matmul(torch.softmax(s + m, dim=-1), v)


class MLP(nn.Module):
    def __init__(self, d_in, d_hidden, d_out, bias=True):
        super().__init__()
        self.lin0 = nn.Linear(d_in, d_hidden, bias=bias)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.lin1 = nn.Linear(d_hidden, d_out, bias=bias)
        self.sm = nn.LogSoftmax(dim=-1)

    def forward(self, x):
        return self.sm(self.lin1(self.drop(self.relu(self.lin0(x)))))


class Decoder(nn.Module):
    def __init__(self, vocab, d_model, d_ff, n_layers):
        super().__init__()
        d = d_model
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(vocab, d)
        self.model.layers = nn.ModuleList()
        for _ in range(n_layers):
            b = nn.Module()
            b.self_attn = nn.Module()
            for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
                setattr(b.self_attn, n, nn.Linear(d, d, bias=False))
            b.mlp = nn.Module()
            b.mlp.gate_proj = nn.Linear(d, d_ff, bias=False)
            b.mlp.up_proj = nn.Linear(d, d_ff, bias=False)
            b.mlp.down_proj = nn.Linear(d_ff, d, bias=False)
            self.model.layers.append(b)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        h = self.model.embed_tokens(ids)
        for b in self.model.layers:
            a = b.self_attn
            h = h + a.o_proj(causal_attention(a.q_proj(h), a.k_proj(h), a.v_proj(h)))
            m = b.mlp
            h = h + m.down_proj(nn.functional.silu(m.gate_proj(h)) * m.up_proj(h))
        return self.lm_head(h)


class GPT2(nn.Module):
    def __init__(self, vocab, d_model, d_ff, n_layers):
        super().__init__()
        from transformers.pytorch_utils import Conv1D
        d = d_model
        self.d = d
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(vocab, d)
        self.transformer.h = nn.ModuleList()
        for _ in range(n_layers):
            b = nn.Module()
            b.attn = nn.Module()
            b.attn.c_attn = Conv1D(3 * d, d)
            b.attn.c_proj = Conv1D(d, d)
            b.mlp = nn.Module()
            b.mlp.c_fc = Conv1D(d_ff, d)
            b.mlp.c_proj = Conv1D(d, d_ff)
            self.transformer.h.append(b)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        h = self.transformer.wte(ids)
        for b in self.transformer.h:
            q, k, v = b.attn.c_attn(h).split(self.d, dim=-1)
            h = h + b.attn.c_proj(causal_attention(q, k, v))
            h = h + b.mlp.c_proj(nn.functional.gelu(b.mlp.c_fc(h)))
        return self.lm_head(h)


def build(case):
    dims = case["model_dims"]
    kind = case["model"]
    if kind in ("mlp", "mlp_nobias"):
        m = MLP(dims["d_in"], dims["d_hidden"], dims["d_out"], dims.get("bias", kind == "mlp"))
    elif kind == "decoder":
        m = Decoder(dims["vocab"], dims["d_model"], dims["d_ff"], dims["n_layers"])
    elif kind == "gpt2":
        m = GPT2(dims["vocab"], dims["d_model"], dims["d_ff"], dims["n_layers"])
    else:
        raise ValueError(f"unknown catalogue model {kind}")
    return m


def atol_of(case, key, default):
    for c in case.get("checks", []):
        if c["key"] == key:
            return c["atol"]
    return default


def run_case(out_dir, case_dir):
    case = json.loads((case_dir / "case.json").read_text())
    dtype = torch.bfloat16 if case["dtype"] == "bfloat16" else torch.float32
    expected = load_file(str(case_dir / "expected.safetensors"))
    inputs = load_file(str(case_dir / "input.safetensors"))
    x = inputs.get("x", inputs.get("input_ids"))
    base = load_file(str(case_dir / "base_model.safetensors"))
    init = case["lora_config"].get("init_lora_weights", True)
    rewrites = isinstance(init, str) and init.startswith(REWRITING)
    if rewrites:
        for key in list(base):
            mod = key[: -len(".weight")] if key.endswith(".weight") else None
            if mod and f"init.{mod}.base_weight" in expected:
                base[key] = expected[f"init.{mod}.base_weight"].to(base[key].dtype)
    model = build(case).to(dtype)
    model.load_state_dict(base, strict=True)
    model.eval()

    adapters = case["adapters"]
    first = True
    pm = None
    for a in adapters:
        name = a["name"]
        path = out_dir if name == "default" else out_dir / name
        if not (path / "adapter_config.json").exists():
            return "FAIL", f"re-saved adapter {name} missing at {path}"
        cfg = LoraConfig.from_pretrained(str(path))
        if rewrites:
            cfg.init_lora_weights = True
        if first:
            pm = PeftModel.from_pretrained(model, str(path), adapter_name=name, config=cfg)
            first = False
        else:
            pm.load_adapter(str(path), adapter_name=name, peft_config=cfg)
    pm.eval()
    worst = 0.0
    problems = []

    def compare(key, got, default_atol=1e-5):
        nonlocal worst
        want = expected[key]
        atol = atol_of(case, key if key in ("out_adapter", "out_disabled", "out_merged") else
                       ("out_adapter" if key.startswith("out_adapter") else "merged.*"), default_atol)
        err = (got.float() - want.float()).abs().max().item()
        worst = max(worst, err)
        if not err <= atol:
            problems.append(f"{key}: max abs err {err:.3g} > atol {atol}")

    active = case["active_adapters"]
    with torch.no_grad():
        pm.base_model.set_adapter(active if len(active) > 1 else active[0])
        compare("out_adapter", pm(x))
        for key in expected:
            if key.startswith("out_adapter."):
                names = key[len("out_adapter."):].split("+")
                pm.base_model.set_adapter(names if len(names) > 1 else names[0])
                compare(key, pm(x))
        pm.base_model.set_adapter(active if len(active) > 1 else active[0])
        with pm.disable_adapter():
            compare("out_disabled", pm(x))
        merged = pm.merge_and_unload()
        compare("out_merged", merged(x))
        sd = merged.state_dict()
        for key in expected:
            if key.startswith("merged."):
                if key[7:] not in sd:
                    problems.append(f"merged model lacks {key[7:]}")
                else:
                    compare(key, sd[key[7:]])
    if problems:
        return "FAIL", "; ".join(problems[:4])
    return "PASS", f"max abs err {worst:.3g}"


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    out, fixtures = Path(sys.argv[1]), Path(sys.argv[2])
    manifest = json.loads((fixtures / "manifest.json").read_text())
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    print(f"Python PEFT {peft.__version__}, torch {torch.__version__}")
    for name in manifest["cases"]:
        if not (out / name).exists():
            status, why = "SKIP", "not re-saved"
        else:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    status, why = run_case(out / name, fixtures / name)
            except Exception as e:  # noqa: BLE001 - report and go on
                status, why = "FAIL", f"raised {type(e).__name__}: {e}"
        counts[status] += 1
        print(f"{status} {name}: {why}")
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
