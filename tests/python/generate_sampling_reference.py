#!/usr/bin/env python3
"""Sampled tokens of transformers' generate() on the hf_models fixtures, the expected values of
GenerateHfModels.SampledTokensMatchTransformersWithTheSameSeed (tests/unit/test_generate.cpp).

Run with the oracle (../shared/oracle): source ../shared/oracle/env.sh &&
    "$ORACLE_PYTHON" tests/python/generate_sampling_reference.py tests/fixtures/hf_models

Per family (llama, gpt2): the base model, then base + the fixture's PEFT adapter;
torch.manual_seed(3) before each generate(input_ids, do_sample=True, temperature=0.7, top_k=20,
top_p=0.9, repetition_penalty=1.3, max_new_tokens=8, no EOS). Prints input_ids[:, :6] (which
identify the fixture set) and the 8 new tokens of each row. peft::models::generate with
GenerationConfig::seed = 3 draws from a CPU generator seeded like torch.manual_seed(3), so it
must print the same tokens.
"""

import sys

import torch
from safetensors.torch import load_file
from peft import PeftModel
from transformers import AutoModelForCausalLM
import transformers.generation.utils as generation_utils

# torch 1.13's torch.distributed.fsdp does not import on Python 3.11 (a dataclass default), and
# generate() asks it whether the model is FSDP-managed; it is not.
generation_utils.is_fsdp_managed_module = lambda module: False

SETTINGS = dict(do_sample=True, temperature=0.7, top_k=20, top_p=0.9, repetition_penalty=1.3,
                max_new_tokens=8, eos_token_id=None, pad_token_id=0)


def sample(model, ids):
    torch.manual_seed(3)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **SETTINGS)
    return out[:, ids.shape[1]:].tolist()


def main(root):
    for family in ["llama", "gpt2"]:
        case = f"{root}/{family}"
        ids = load_file(f"{case}/expected.safetensors")["input_ids"]
        base = AutoModelForCausalLM.from_pretrained(f"{case}/base", attn_implementation="eager").eval()
        print(family, "input_ids[:, :6]", ids[:, :6].tolist())
        print(family, "base", sample(base, ids))
        adapted = PeftModel.from_pretrained(base, f"{case}/adapter").eval()
        print(family, "adapter", sample(adapted, ids))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/hf_models")
