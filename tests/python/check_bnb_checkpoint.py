"""Checks a 4-bit checkpoint written by peft-cpp (save_causal_lm of a quantised model) with real
bitsandbytes (its pure-torch default backend, ../shared/oracle/bnb.py):

  1. every `<m>.weight` + `<m>.weight.*` group loads through bnb's QuantState.from_dict, as
     transformers' bitsandbytes loader does, and bnb dequantises it;
  2. quantising the dense checkpoint it was made from with bnb gives the same bytes (codes, absmax,
     nested state, the packed quant_state JSON) and the same dequantised weight.

    source ../shared/oracle/env.sh
    build/tests/peft_unit_tests --gtest_filter='QuantizeModel4bit.Saved*'   # writes the two dirs
    "$ORACLE_PYTHON" tests/python/check_bnb_checkpoint.py build/tests/tmp/peft_qlora_save build/tests/tmp/peft_qlora_save_dense

Exit 0 and one summary line when everything matches. Never run by CI.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "oracle"))
sys.path.insert(0, "/work/shared/oracle")
from bnb import load_bitsandbytes  # noqa: E402

bnb = load_bitsandbytes()
from safetensors.torch import load_file  # noqa: E402

F = bnb.functional
qdir, ddir = sys.argv[1], sys.argv[2]
q = load_file(os.path.join(qdir, "model.safetensors"))
dense = load_file(os.path.join(ddir, "model.safetensors"))
qc = json.load(open(os.path.join(qdir, "config.json")))["quantization_config"]
assert qc["quant_method"] == "bitsandbytes" and qc["load_in_4bit"], qc
groups = sorted({k.split(".weight.quant_state.")[0] for k in q if ".weight.quant_state." in k})
assert groups, "no 4-bit layers"
checked = 0
for m in groups:
    prefix = m + ".weight."
    packed = q[m + ".weight"]
    st = F.QuantState.from_dict({k[len(prefix):]: v for k, v in q.items() if k.startswith(prefix)}, device="cpu")
    ours = F.dequantize_4bit(packed, st)
    w = dense[m + ".weight"]
    ref_packed, ref_st = F.quantize_4bit(w, blocksize=st.blocksize, quant_type=st.quant_type,
                                         compress_statistics=st.nested)
    assert torch.equal(packed, ref_packed), f"{m}: codes differ"
    ref = ref_st.as_dict(packed=True)
    for k, v in ref.items():
        assert torch.equal(q[prefix + k], v), f"{m}: {k} differs"
    assert torch.equal(ours, F.dequantize_4bit(ref_packed, ref_st)), f"{m}: dequantised weight differs"
    checked += 1
print(f"OK: {checked} 4-bit layers load in bitsandbytes and equal its own quantisation of the dense checkpoint")
