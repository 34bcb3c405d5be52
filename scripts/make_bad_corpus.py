#!/usr/bin/env python3
"""Writes tests/data/: a tiny base model, good adapters for it, and the corpus of bad inputs
(tests/data/bad/) that tests/unit/test_bad_inputs.cpp, the peft-inspect ctest and the fuzz seeds
use. Standard library only; deterministic; every file is a few hundred bytes (deep-nesting cases
a few hundred kB at most). Re-run after changing it and commit the output:

    python3 scripts/make_bad_corpus.py

The model ("tiny_mlp"): lin0 = Linear(4 -> 6), lin1 = Linear(6 -> 3), both with bias; the good
adapter has r = 2, lora_alpha = 4 on lin0 and lin1 (test_bad_inputs.cpp builds the same model).
"""
import json
import os
import shutil
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")
P = "base_model.model."
IN, HID, OUT, R = 4, 6, 3, 2


def values(n, seed):
    # Small exact binary fractions, so C++ and Python agree bit for bit.
    return [((i * 7 + seed * 3) % 11 - 5) * 0.125 for i in range(n)]


def pack(dtype, vals):
    fmt = {"F32": "f", "F64": "d", "I32": "i", "I64": "q"}[dtype]
    if dtype.startswith("I"):
        vals = [int(v * 8) for v in vals]
    return struct.pack("<%d%s" % (len(vals), fmt), *vals)


def safetensors(tensors, metadata=None, header_override=None):
    """tensors: list of (name, dtype, shape, raw bytes). Returns the file bytes."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = header_override if header_override is not None else json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def t(name, shape, seed, dtype="F32"):
    n = 1
    for d in shape:
        n *= d
    return (name, dtype, list(shape), pack(dtype, values(n, seed)))


def base_tensors():
    return [t("lin0.weight", [HID, IN], 1), t("lin0.bias", [HID], 2),
            t("lin1.weight", [OUT, HID], 3), t("lin1.bias", [OUT], 4)]


def adapter_tensors(r=R, in0=IN):
    return [t(P + "lin0.lora_A.weight", [r, in0], 5), t(P + "lin0.lora_B.weight", [HID, r], 6),
            t(P + "lin1.lora_A.weight", [r, HID], 7), t(P + "lin1.lora_B.weight", [OUT, r], 8)]


def config(base, **over):
    c = {"peft_type": "LORA", "r": R, "lora_alpha": 4, "target_modules": ["lin0", "lin1"],
         "lora_dropout": 0.0, "bias": "none", "init_lora_weights": True, "use_dora": False,
         "task_type": None, "base_model_name_or_path": base, "inference_mode": True}
    c.update(over)
    return json.dumps(c, indent=2, sort_keys=True).encode()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def adapter_dir(name, weights=None, cfg=None, root="bad"):
    d = os.path.join(ROOT, root, name)
    base = "../../tiny_mlp/base_model.safetensors"
    if cfg is None:
        cfg = config(base)
    elif not isinstance(cfg, bytes):
        cfg = config(base, **cfg)
    if weights is None:
        weights = safetensors(adapter_tensors(), {"format": "pt"})
    if cfg != b"<none>":
        write(os.path.join(d, "adapter_config.json"), cfg)
    if weights != b"<none>":
        write(os.path.join(d, "adapter_model.safetensors"), weights)


def main():
    for sub in ("tiny_mlp", "bad"):
        shutil.rmtree(os.path.join(ROOT, sub), ignore_errors=True)
    write(os.path.join(ROOT, "tiny_mlp", "base_model.safetensors"), safetensors(base_tensors()))
    # Good adapters: plain LoRA and DoRA (magnitude = row norms are not needed to be exact).
    good = os.path.join(ROOT, "tiny_mlp", "adapter")
    write(os.path.join(good, "adapter_config.json"), config("../base_model.safetensors"))
    write(os.path.join(good, "adapter_model.safetensors"), safetensors(adapter_tensors(), {"format": "pt"}))
    dora = os.path.join(ROOT, "tiny_mlp", "dora_adapter")
    write(os.path.join(dora, "adapter_config.json"), config("../base_model.safetensors", use_dora=True))
    write(os.path.join(dora, "adapter_model.safetensors"),
          safetensors(adapter_tensors() + [t(P + "lin0.lora_magnitude_vector", [HID], 9),
                                           t(P + "lin1.lora_magnitude_vector", [OUT], 10)], {"format": "pt"}))

    good_w = safetensors(adapter_tensors(), {"format": "pt"})
    # --- safetensors ---
    adapter_dir("st_truncated_file", weights=good_w[:5])
    adapter_dir("st_truncated_header", weights=good_w[:40])
    adapter_dir("st_oversized_header", weights=struct.pack("<Q", 1 << 40) + good_w[8:])
    adapter_dir("st_truncated_data", weights=good_w[:len(good_w) - 20])
    hdr = json.loads(good_w[8:8 + struct.unpack("<Q", good_w[:8])[0]])
    def with_header(mutate):
        h = json.loads(json.dumps(hdr))
        mutate(h)
        text = json.dumps(h).encode()
        text += b" " * (-len(text) % 8)
        data = good_w[8 + struct.unpack("<Q", good_w[:8])[0]:]
        return struct.pack("<Q", len(text)) + text + data
    adapter_dir("st_offsets_out_of_range", weights=with_header(
        lambda h: h[P + "lin1.lora_B.weight"].update(data_offsets=[168, 4096])))
    adapter_dir("st_offsets_overlap", weights=with_header(
        lambda h: h[P + "lin0.lora_B.weight"].update(data_offsets=[16, 64])))
    adapter_dir("st_dtype_shape_mismatch", weights=with_header(
        lambda h: h[P + "lin0.lora_A.weight"].update(shape=[2, 3])))
    bad_utf8 = json.dumps(hdr).encode().replace(b"lin1.lora_A", b"lin1.lora_\xff\xfe", 1)
    adapter_dir("st_header_not_utf8", weights=safetensors([], header_override=bad_utf8) +
                good_w[8 + struct.unpack("<Q", good_w[:8])[0]:])
    adapter_dir("st_header_deep_nesting",
                weights=safetensors([], header_override=b'{"__metadata__": ' + b"[" * 20000 + b"]" * 20000 + b"}"))
    # --- adapter_config.json ---
    adapter_dir("cfg_not_utf8", cfg=config("../../tiny_mlp/base_model.safetensors").replace(b"LORA", b"LO\xc3\x28RA"))
    adapter_dir("cfg_deep_nesting", cfg=b'{"peft_type": "LORA", "megatron_config": ' + b"[" * 20000 +
                b"]" * 20000 + b"}")
    adapter_dir("cfg_truncated", cfg=config("../../tiny_mlp/base_model.safetensors")[:60])
    adapter_dir("cfg_not_an_object", cfg=b'["peft_type", "LORA"]\n')
    adapter_dir("cfg_wrong_type_r", cfg={"r": "2"})
    adapter_dir("cfg_wrong_type_target_modules", cfg={"target_modules": 42})
    adapter_dir("cfg_wrong_type_lora_alpha", cfg={"lora_alpha": [4]})
    adapter_dir("cfg_wrong_type_use_dora", cfg={"use_dora": "yes"})
    adapter_dir("cfg_missing", cfg=b"<none>")
    # --- adapter against the model ---
    adapter_dir("weights_missing", weights=b"<none>")
    adapter_dir("missing_lora_b", weights=safetensors(
        [x for x in adapter_tensors() if x[0] != P + "lin0.lora_B.weight"], {"format": "pt"}))
    adapter_dir("wrong_base_model", weights=safetensors(adapter_tensors(in0=5), {"format": "pt"}))
    adapter_dir("rank_mismatch", weights=safetensors(adapter_tensors(r=3), {"format": "pt"}))
    adapter_dir("int_dtype", weights=safetensors(
        [t(P + "lin0.lora_A.weight", [R, IN], 5, "I32")] + adapter_tensors()[1:], {"format": "pt"}))
    nan = adapter_tensors()
    raw = bytearray(nan[3][3])
    raw[4:8] = struct.pack("<f", float("nan"))
    nan[3] = nan[3][:3] + (bytes(raw),)
    adapter_dir("nan_weights", weights=safetensors(nan, {"format": "pt"}))

    write(os.path.join(ROOT, "tiny_mlp", "train.yaml"),
          b"model: tiny_mlp\nlora:\n  r: 2\n  lora_alpha: 4\n  target_modules: [lin0, lin1]\n"
          b"  rank_pattern:\n    lin1: 4\n  eva_config:\n    rho: 2.0\n")
    # --- YAML training configs (`lora:` section) ---
    y = os.path.join(ROOT, "bad", "yaml")
    write(os.path.join(y, "tabs.yaml"), b"lora:\n\tr: 8\n\tlora_alpha: 16\n")
    write(os.path.join(y, "duplicate_key.yaml"), b"lora:\n  r: 8\n  lora_alpha: 16\n  r: 4\n")
    write(os.path.join(y, "wrong_type.yaml"), b"lora:\n  r: 8\n  target_modules: {q: 1}\n")
    write(os.path.join(y, "not_utf8.yaml"), b"lora:\n  r: 8\n  target_modules: [q\xff\xfe]\n")
    write(os.path.join(y, "deep_nesting.yaml"), b"lora:\n  megatron_config: " + b"[" * 20000 + b"]" * 20000 + b"\n")
    write(os.path.join(y, "not_a_mapping.yaml"), b"lora: [r, 8]\n")


if __name__ == "__main__":
    main()
