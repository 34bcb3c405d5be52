"""Checks a 4-bit checkpoint written by peft-cpp (save_causal_lm of a quantised model) with real
bitsandbytes (its pure-torch default backend, ../shared/oracle/bnb.py):

  1. every `<m>.weight` + `<m>.weight.*` group loads through bnb's QuantState.from_dict, as
     transformers' bitsandbytes loader does, and bnb dequantises it;
  2. quantising the dense checkpoint it was made from with bnb gives the same bytes (codes, absmax,
     nested state, the packed quant_state JSON) and the same dequantised weight;
  3. transformers' own loader reads the directory (AutoModelForCausalLM.from_pretrained with
     device_map cpu: its Bnb4BitHfQuantizer builds bnb Linear4bit layers from our entries), and the
     loaded model's logits equal the dense model's with every 4-bit weight replaced by bnb's
     dequantisation of ours. transformers 4.47 allows bnb's CPU backend only with Intel's IPEX
     and reads bnb's version from package metadata: the script gives it a metadata stub and skips
     Bnb4BitHfQuantizer.validate_environment (environment checks only; loading and arithmetic
     are transformers' and bitsandbytes' own).

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

# 3. transformers' from_pretrained.
import importlib  # noqa: E402
import tempfile  # noqa: E402

stub = tempfile.mkdtemp()
os.makedirs(os.path.join(stub, "bitsandbytes-0.45.0.dist-info"))
with open(os.path.join(stub, "bitsandbytes-0.45.0.dist-info", "METADATA"), "w") as f:
    f.write("Metadata-Version: 2.1\nName: bitsandbytes\nVersion: 0.45.0\n")
sys.path.append(stub)
importlib.invalidate_caches()
from transformers import AutoModelForCausalLM  # noqa: E402
from transformers.quantizers.quantizer_bnb_4bit import Bnb4BitHfQuantizer  # noqa: E402

Bnb4BitHfQuantizer.validate_environment = lambda self, *a, **k: None
loaded = AutoModelForCausalLM.from_pretrained(qdir, device_map={"": "cpu"}, torch_dtype=torch.float32).eval()
linear4 = {n for n, m in loaded.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
assert linear4 == set(groups), f"transformers made Linear4bit of {sorted(linear4)}, the checkpoint has {groups}"
reference = AutoModelForCausalLM.from_pretrained(ddir).eval()
with torch.no_grad():
    for m in groups:
        prefix = m + ".weight."
        st = F.QuantState.from_dict({k[len(prefix):]: v for k, v in q.items() if k.startswith(prefix)}, device="cpu")
        reference.get_submodule(m).weight.copy_(F.dequantize_4bit(q[m + ".weight"], st))
    ids = torch.randint(0, reference.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    got, want = loaded(ids).logits.float(), reference(ids).logits.float()
diff = (got - want).abs().max().item()
assert diff <= 1e-4 * max(1.0, want.abs().max().item()), f"from_pretrained logits differ by {diff}"
print(f"OK: {checked} 4-bit layers load in bitsandbytes and equal its own quantisation of the dense checkpoint; "
      f"transformers' from_pretrained builds {len(linear4)} Linear4bit layers and its logits match (max diff {diff:.2e})")
