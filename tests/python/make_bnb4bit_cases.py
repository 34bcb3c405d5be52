"""Writes tests/data/bnb4bit/: golden files from real bitsandbytes (its pure-torch default backend, commit
95f9af3, via ../shared/oracle/bnb.py) and PEFT 0.20's LoRA on bnb.nn.Linear4bit.

    source ../shared/oracle/env.sh; "$ORACLE_PYTHON" tests/python/make_bnb4bit_cases.py [OUT_DIR] [SEED]

quant_cases.safetensors + quant_cases.json: quantize_4bit / dequantize_4bit cases (nf4/fp4, fp32/fp16/bf16
inputs, block sizes, partial last blocks, odd element counts, all-zero blocks, values exactly on the code
midpoints, double quantisation). Per case `<name>.input`, `.packed`, `.absmax` (uint8 when nested),
`.nested_absmax`, `.nested_quant_map`, `.quant_map`, `.dequant`; the JSON has the packed quant_state string.
`dynamic_map`: bnb's signed 8-bit dynamic map (the nested absmax code).

layer_<name>/: a two-layer model of bnb Linear4bit (`fc1` with bias, `fc2` without), quantised by bnb;
`base_model.safetensors` is its state_dict as transformers saves it (weight U8 + weight.absmax, ...);
`adapter/` PEFT's save_pretrained; `input.safetensors` x and probe; `expected.safetensors`: `lora` (adapter
on), `base` (adapters disabled), `grad.<param>` (d sum(lora * probe) / d param for every trainable param),
`merged` (merge_and_unload: PEFT requantises) and `merged.<fc>.weight...` (the requantised state).
Never run by CI: the files are committed.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "oracle"))
sys.path.insert(0, "/work/shared/oracle")
from bnb import load_bitsandbytes  # noqa: E402

bnb = load_bitsandbytes()
from safetensors.torch import save_file  # noqa: E402

F = bnb.functional
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "bnb4bit")
SEED = int(sys.argv[2]) if len(sys.argv) > 2 else 0
os.makedirs(OUT, exist_ok=True)
DT = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def make_input(shape, blocksize, quant_type, dtype, gen, zero_block, ties):
    a = torch.randn(*shape, generator=gen) * 0.05
    flat = a.view(-1)
    n = flat.numel()
    if zero_block and n >= 2 * blocksize:
        flat[blocksize:2 * blocksize] = 0
    if ties and n >= blocksize:
        # first block: absmax 1, then values exactly on every midpoint of the code (ties go down)
        code = F.get_4bit_type(quant_type, device="cpu").sort().values
        mids = ((code[:-1] + code[1:]) / 2)
        flat[:blocksize] = 0.25
        flat[0] = 1.0
        flat[1:1 + mids.numel()] = mids[: blocksize - 1]
    return a.to(dtype)


def quant_cases():
    gen = torch.Generator().manual_seed(SEED)
    cases, tensors = [], {}
    specs = [
        # name, quant_type, blocksize, dtype, shape, nested, zero_block, ties
        ("nf4_fp32_b64", "nf4", 64, "float32", [24, 16], False, True, True),
        ("fp4_fp32_b64", "fp4", 64, "float32", [24, 16], False, True, True),
        ("nf4_fp32_partial", "nf4", 64, "float32", [7, 19], False, False, False),
        ("fp4_fp32_odd", "fp4", 32, "float32", [5, 13], False, True, False),
        ("nf4_fp16_b128", "nf4", 128, "float16", [16, 48], False, True, True),
        ("fp4_bf16_b64", "fp4", 64, "bfloat16", [12, 40], False, False, True),
        ("nf4_bf16_nested", "nf4", 64, "bfloat16", [96, 200], True, True, False),
        ("fp4_fp32_nested", "fp4", 64, "float32", [70, 130], True, False, True),
        ("nf4_fp32_nested_partial", "nf4", 32, "float32", [33, 257], True, True, True),
    ]
    for name, qt, bs, dt, shape, nested, zb, ties in specs:
        a = make_input(shape, bs, qt, DT[dt], gen, zb, ties)
        packed, st = F.quantize_4bit(a, blocksize=bs, quant_type=qt, compress_statistics=nested)
        deq = F.dequantize_4bit(packed, st)
        d = st.as_dict(packed=True)
        qs_key = f"quant_state.bitsandbytes__{qt}"
        tensors[f"{name}.input"] = a
        tensors[f"{name}.packed"] = packed
        tensors[f"{name}.dequant"] = deq
        for k in ("absmax", "quant_map", "nested_absmax", "nested_quant_map"):
            if k in d:
                tensors[f"{name}.{k}"] = d[k]
        cases.append({"name": name, "quant_type": qt, "blocksize": bs, "dtype": dt, "shape": shape,
                      "compress_statistics": nested, "quant_state": bytes(d[qs_key].tolist()).decode()})
    tensors["dynamic_map"] = F.create_dynamic_map()
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "quant_cases.safetensors"))
    with open(os.path.join(OUT, "quant_cases.json"), "w") as f:
        json.dump({"seed": SEED, "cases": cases}, f, indent=1)


class Net(torch.nn.Module):
    def __init__(self, i, h, o, qt, nested, cdtype):
        super().__init__()
        self.fc1 = bnb.nn.Linear4bit(i, h, bias=True, compute_dtype=cdtype, quant_type=qt,
                                     compress_statistics=nested)
        self.fc2 = bnb.nn.Linear4bit(h, o, bias=False, compute_dtype=cdtype, quant_type=qt,
                                     compress_statistics=nested)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def layer_case(name, i, h, o, qt, nested, use_dora, r, alpha, seed):
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(seed)
    dense = torch.nn.ModuleDict({"fc1": torch.nn.Linear(i, h), "fc2": torch.nn.Linear(h, o, bias=False)})
    net = Net(i, h, o, qt, nested, torch.float32)
    for fc in ("fc1", "fc2"):
        lin = getattr(net, fc)
        lin.weight = bnb.nn.Params4bit(dense[fc].weight.data.clone(), requires_grad=False, quant_type=qt,
                                       compress_statistics=nested, blocksize=64)
        if dense[fc].bias is not None:
            lin.bias = torch.nn.Parameter(dense[fc].bias.data.clone())
    net = net.to("cpu")  # bnb quantises here
    net.is_loaded_in_4bit = True  # what transformers sets; PEFT's dispatch_bnb_4bit reads it
    d = os.path.join(OUT, f"layer_{name}")
    os.makedirs(d, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, os.path.join(d, "base_model.safetensors"))
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=["fc1", "fc2"], init_lora_weights=False,
                     use_dora=use_dora, lora_dropout=0.0)
    model = get_peft_model(net, cfg)
    x = torch.randn(3, 5, i)
    probe = torch.randn(3, 5, o)
    model.train()
    y = model(x)
    (y * probe).sum().backward()
    exp = {"lora": y.detach()}
    for n, p in model.named_parameters():
        if p.requires_grad:
            exp["grad." + n.replace("base_model.model.", "")] = p.grad.detach().clone()
    model.eval()
    with torch.no_grad():
        with model.disable_adapter():
            exp["base"] = model(x)
    model.save_pretrained(os.path.join(d, "adapter"))
    merged = model.merge_and_unload()
    with torch.no_grad():
        exp["merged"] = merged(x)
    for k, v in merged.state_dict().items():
        exp["merged." + k] = v
    save_file({k: v.contiguous() for k, v in exp.items()}, os.path.join(d, "expected.safetensors"))
    save_file({"x": x, "probe": probe}, os.path.join(d, "input.safetensors"))
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump({"in": i, "hidden": h, "out": o, "quant_type": qt, "compress_statistics": nested,
                   "use_dora": use_dora, "r": r, "lora_alpha": alpha, "compute_dtype": "float32",
                   "blocksize": 64, "seed": seed}, f, indent=1)


quant_cases()
layer_case("nf4", 32, 48, 24, "nf4", False, False, 4, 8, SEED + 1)
layer_case("nf4_nested_dora", 64, 40, 16, "nf4", True, True, 8, 16, SEED + 2)
layer_case("fp4_nested", 48, 32, 20, "fp4", True, False, 2, 4, SEED + 3)
print("wrote", OUT)
