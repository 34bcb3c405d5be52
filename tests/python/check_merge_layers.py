"""peft-merge against Python PEFT's merge on the layer suite: for every case of a peft-layers root
with one adapter and `merged.*` expected tensors (PEFT's merge_and_unload state dict), run
`peft-merge --base <case>/base_model.safetensors --adapter <case>/adapter` and compare.

    python3 tests/python/check_merge_layers.py tests/fixtures/peft-layers build/peft-merge

Trainable-token adapters are refused by peft-merge (reported as REFUSED).
"""
import os
import shutil
import subprocess
import sys

from safetensors.torch import load_file
root, exe = sys.argv[1], sys.argv[2]
ok = bad = skipped = 0
for case in sorted(os.listdir(root)):
    d = os.path.join(root, case)
    if not os.path.isfile(os.path.join(d, "case.json")): continue
    exp = load_file(os.path.join(d, "expected.safetensors"))
    merged = {k[len("merged."):]: v for k, v in exp.items() if k.startswith("merged.")}
    adir = os.path.join(d, "adapter")
    if not merged or not os.path.isfile(os.path.join(adir, "adapter_model.safetensors")) or \
       any(os.path.isdir(os.path.join(adir, x)) for x in os.listdir(adir)):
        skipped += 1
        continue
    out = "/tmp/merge_check_out"
    shutil.rmtree(out, ignore_errors=True)
    r = subprocess.run([exe, "--base", os.path.join(d, "base_model.safetensors"), "--adapter", adir, "--out", out],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print("REFUSED", case, r.stderr.strip().splitlines()[-1][:200])
        bad += 1
        continue
    got = load_file(os.path.join(out, "model.safetensors"))
    diff = max((got[k].float() - v.float()).abs().max().item() for k, v in merged.items())
    status = "PASS" if diff < 1e-5 else "FAIL"
    ok += status == "PASS"
    bad += status != "PASS"
    print(status, case, f"{diff:.2e}")
print(f"{ok} passed, {bad} failed/refused, {skipped} skipped")
