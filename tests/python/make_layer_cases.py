"""Write a layer-suite golden set (fixtures README section 8) with real Python PEFT 0.20.0.

Produces `<out>/peft-layers/` with `manifest.json`, `configs.json` and one directory per case, in the
format of `tests/fixtures/peft-layers/` (case.json, base_model / input / expected safetensors,
adapter/ as written by `save_pretrained`).  It is a stand-in for the hidden set ("same shape, other
sizes, seeds and combinations"), used to check that `peft_conformance` hard-codes nothing.

Run (oracle environment, see shared/oracle/README.md):

    source /work/shared/oracle/env.sh
    "$ORACLE_PYTHON" tests/python/make_layer_cases.py --out /tmp/hidden_layers            # variants + visible regen
    "$ORACLE_PYTHON" tests/python/make_layer_cases.py --out /tmp/x --only visible \
        --seeds-from tests/fixtures/peft-layers                                            # regenerate the visible set
    PEFT_FIXTURES=/tmp/hidden_layers build/tests/peft_conformance | grep -v '^PASS'

`--only visible|hidden|all` picks the case list; `--seeds-from DIR` takes each visible case's seeds
from DIR/<case>/case.json (so the regenerated visible cases can be compared with the shipped ones).
"""

import argparse
import contextlib
import copy
import functools
import io
import json
import os
import shutil
import tempfile
import warnings
import zlib

import torch
from torch import nn

from safetensors.torch import save_file

import peft
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from peft.utils.other import ModulesToSaveWrapper, TrainableTokensWrapper

# ------------------------------------------------------------------------------------------------
# torch 1.13 lacks register_forward_pre_hook(..., with_kwargs=True) (torch >= 2.0), which PEFT uses
# to hand `adapter_names` to each layer for mixed batches.  Give only that call torch 2's semantics:
# the hook sees (module, args, kwargs) and returns (args, kwargs) for the module's forward.
_orig_pre_hook = nn.Module.register_forward_pre_hook


class _KwHookHandle:
    def __init__(self, module, previous):
        self.module, self.previous = module, previous

    def remove(self):
        if self.previous is None:
            self.module.__dict__.pop("forward", None)
        else:
            self.module.forward = self.previous


def _pre_hook(self, hook, *args, with_kwargs=False, prepend=False):
    if not with_kwargs:
        return _orig_pre_hook(self, hook)
    module = self
    previous = module.__dict__.get("forward")
    inner = previous if previous is not None else functools.partial(type(module).forward, module)

    def forward(*a, **kw):
        res = hook(module, a, kw)
        if res is not None:
            a, kw = res
        return inner(*a, **kw)

    module.forward = forward
    return _KwHookHandle(module, previous)


nn.Module.register_forward_pre_hook = _pre_hook

# ------------------------------------------------------------------------------------------------
# Models (README 8.2)


class ConvNet(nn.Module):
    def __init__(self, c_in, c1, c2, height, width, n_out):
        super().__init__()
        self.conv0 = nn.Conv2d(c_in, c1, kernel_size=3, stride=1, padding=1)
        self.relu0 = nn.ReLU()
        self.conv1 = nn.Conv2d(c1, c2, kernel_size=3, stride=2, padding=1)
        self.relu1 = nn.ReLU()
        self.flat = nn.Flatten(start_dim=1)
        h2, w2 = (height - 1) // 2 + 1, (width - 1) // 2 + 1
        self.head = nn.Linear(c2 * h2 * w2, n_out)

    def forward(self, x):
        return self.head(self.flat(self.relu1(self.conv1(self.relu0(self.conv0(x))))))


class Conv1dNet(nn.Module):
    def __init__(self, c_in, c1, c2, length, n_out):
        super().__init__()
        self.conv0 = nn.Conv1d(c_in, c1, kernel_size=3, stride=1, padding=1)
        self.relu0 = nn.ReLU()
        self.conv1 = nn.Conv1d(c1, c2, kernel_size=5, stride=2, padding=2)
        self.relu1 = nn.ReLU()
        self.flat = nn.Flatten(start_dim=1)
        self.head = nn.Linear(c2 * ((length - 1) // 2 + 1), n_out)

    def forward(self, x):
        return self.head(self.flat(self.relu1(self.conv1(self.relu0(self.conv0(x))))))


class EmbedNet(nn.Module):
    def __init__(self, vocab, d_model):
        super().__init__()
        self.emb = nn.Embedding(vocab, d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, ids):
        return self.head(torch.tanh(self.proj(self.emb(ids))))


MODELS = {"convnet": ConvNet, "conv1dnet": Conv1dNet, "embednet": EmbedNet}


def build_base(model, dims, seed):
    torch.manual_seed(seed)
    m = MODELS[model](**dims)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in m.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return m.eval()


def make_input(model, dims, shape, seed):
    g = torch.Generator().manual_seed(seed)
    if model == "convnet":
        return "x", torch.randn(shape, dims["c_in"], dims["height"], dims["width"], generator=g)
    if model == "conv1dnet":
        return "x", torch.randn(shape, dims["c_in"], dims["length"], generator=g)
    return "input_ids", torch.randint(0, dims["vocab"], list(shape), generator=g, dtype=torch.int64)


# ------------------------------------------------------------------------------------------------
# Case lists

from layer_cases import (HID_C1D, HID_CONV, HID_EMB, HID_SHAPES, VIS_C1D, VIS_CONV, VIS_EMB,  # noqa: E402
                         VIS_SHAPES, hidden_cases, visible_cases)


def seeds_for(name, variant):
    base = zlib.crc32(f"{name}:{variant}".encode()) & 0x7FFFFFFF
    return {k: base + i for i, k in enumerate(["base", "input", "rng", "perturb", "calib", "weighted"])}


def warn_text(ws):
    out = []
    for w in ws:
        t = f"{w.category.__name__}: {w.message}"
        if t not in out:
            out.append(t)
    return out


def owner_adapter(pname, adapters):
    parts = pname.split(".")
    for a in adapters:
        if a in parts:
            return a
    return None


def layer_entry(mod, a):
    base = mod.get_base_layer()
    e = {
        "r": mod.r[a],
        "lora_alpha": mod.lora_alpha[a],
        "scaling": mod.scaling[a],
        "use_dora": bool(mod.use_dora.get(a, False)),
        "lora_bias": bool(mod.lora_bias.get(a, False)),
        "fan_in_fan_out": bool(getattr(mod, "fan_in_fan_out", False)),
        "in_features": mod.in_features,
        "out_features": mod.out_features,
        "base_layer_type": type(base).__name__,
    }
    if isinstance(base, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        e["kernel_size"] = list(base.kernel_size)
        e["stride"] = list(base.stride)
        e["padding"] = list(base.padding)
    return e


def strip(name):
    return name[len("base_model.model."):] if name.startswith("base_model.model.") else name


CHECK_HOW = {
    "out_base": "base model (base_model.safetensors) forward on the input",
    "out_adapter": "base model + adapter(s) loaded from adapter/, active_adapters active, eval mode",
    "out_disabled": "same model inside disable_adapter()",
    "out_merged": "merge_and_unload() of that model, then forward",
    "merged.*": "state_dict of the merge_and_unload() result (plain module keys)",
    "out_mixed": "forward with adapter_names = mixed_adapter_names (one per input row, '__base__' = no adapter), active_adapters active, eval mode",
    "out_unmerged": "merge_adapter() then unmerge_adapter() (active adapters), then forward with the adapters active; equals out_adapter up to float rounding",
    "unmerged.*": "after that round trip: the base weights (plain module keys) of every LoRA-wrapped and token-wrapped layer; equal to base_model up to float rounding",
}


def set_active(pm, names):
    pm.base_model.set_adapter(list(names) if len(names) > 1 else names[0])


def generate_case(spec, out_root, seeds):
    name, model_name, dims = spec["name"], spec["model"], spec["dims"]
    cdir = os.path.join(out_root, name)
    shutil.rmtree(cdir, ignore_errors=True)
    os.makedirs(cdir)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        base = build_base(model_name, dims, seeds["base"])
        base_sd = {k: v.detach().clone().contiguous() for k, v in base.state_dict().items()}
        save_file(base_sd, os.path.join(cdir, "base_model.safetensors"))
        in_key, x = make_input(model_name, dims, spec["shape"], seeds["input"])
        save_file({in_key: x}, os.path.join(cdir, "input.safetensors"))
        expected = {}
        with torch.no_grad():
            expected["out_base"] = base(x).detach().clone()

        torch.manual_seed(seeds["rng"])
        names = [a for a, _ in spec["adapters"]]
        pm = None
        for a, kw in spec["adapters"]:
            if pm is None:
                pm = get_peft_model(base, LoraConfig(**kw), adapter_name=a)
            else:
                pm.add_adapter(a, LoraConfig(**kw))
        pm.eval()

        # rng_init of adapter "default"
        for mname, mod in pm.base_model.model.named_modules():
            if isinstance(mod, LoraLayer):
                if "default" in mod.lora_A:
                    expected[f"rng_init.{mname}.lora_A"] = mod.lora_A["default"].weight.detach().clone()
                    expected[f"rng_init.{mname}.lora_B"] = mod.lora_B["default"].weight.detach().clone()
                elif "default" in mod.lora_embedding_A:
                    expected[f"rng_init.{mname}.lora_A"] = mod.lora_embedding_A["default"].detach().clone()
                    expected[f"rng_init.{mname}.lora_B"] = mod.lora_embedding_B["default"].detach().clone()

        trainable, all_params = pm.get_nb_trainable_parameters()
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            pm.print_trainable_parameters()
        ptp = buf.getvalue().strip()

        targeted, layers, mts, tokens = {a: [] for a in names}, {a: {} for a in names}, [], {}
        for mname, mod in pm.base_model.model.named_modules():
            if isinstance(mod, LoraLayer):
                for a in names:
                    if a in mod.lora_A or a in mod.lora_embedding_A:
                        targeted[a].append(mname)
                        layers[a][mname] = layer_entry(mod, a)
            if isinstance(mod, ModulesToSaveWrapper):
                mts.append(mname)
            if isinstance(mod, TrainableTokensWrapper):
                tokens[mname] = {a: list(mod.token_adapter.token_indices[a]) for a in names if a in mod.token_adapter.token_indices}

        # training stand-in
        perturbed = {a: [] for a in names}
        with torch.no_grad():
            for j, (a, kw) in enumerate(spec["adapters"]):
                g = torch.Generator().manual_seed(seeds["perturb"] + 101 * j)
                bias_all = kw.get("bias", "none") == "all"
                for pname, p in pm.named_parameters():
                    own = owner_adapter(pname, names)
                    is_base_bias = own is None and pname.endswith("bias") and "lora_" not in pname
                    if own == a or (bias_all and is_base_bias):
                        p.add_(0.1 * torch.randn(p.shape, generator=g))
                        perturbed[a].append(pname)

        active = spec["active"]
        set_active(pm, active)
        with torch.no_grad():
            expected["out_adapter"] = pm(x).detach().clone()
            for combo in spec["combos"]:
                set_active(pm, combo.split("+"))
                expected[f"out_adapter.{combo}"] = pm(x).detach().clone()
            set_active(pm, active)
            with pm.disable_adapter():
                expected["out_disabled"] = pm(x).detach().clone()
            if spec["mixed"] is not None:
                expected["out_mixed"] = pm(x, adapter_names=list(spec["mixed"])).detach().clone()
            # merge -> unmerge round trip on a copy
            rt = copy.deepcopy(pm)
            rt.merge_adapter()
            rt.unmerge_adapter()
            expected["out_unmerged"] = rt(x).detach().clone()
            for mname, mod in rt.base_model.model.named_modules():
                if isinstance(mod, LoraLayer):
                    for pn, p in mod.get_base_layer().named_parameters():
                        expected[f"unmerged.{mname}.{pn}"] = p.detach().clone()
                if isinstance(mod, TrainableTokensWrapper):
                    for pn, p in mod.original_module.named_parameters():
                        expected[f"unmerged.{mname}.{pn}"] = p.detach().clone()
            del rt

        adir = os.path.join(cdir, "adapter")
        pm.save_pretrained(adir)
        for dp, _, fn in os.walk(adir):
            if "README.md" in fn:
                os.remove(os.path.join(dp, "README.md"))

        with torch.no_grad():
            merged = copy.deepcopy(pm).merge_and_unload()
            expected["out_merged"] = merged(x).detach().clone()
            for k, v in merged.state_dict().items():
                expected[f"merged.{k}"] = v.detach().clone()
        save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(cdir, "expected.safetensors"))

    # reload verification (PEFT from the written files alone)
    reload = {"atol": 1e-05}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fresh = MODELS[model_name](**dims)
            fresh.load_state_dict(base_sd)
            fresh.eval()
            rl = PeftModel.from_pretrained(fresh, adir, adapter_name=names[0])
            for a in names[1:]:
                rl.load_adapter(os.path.join(adir, a), adapter_name=a)
            rl.eval()
            set_active(rl, active)
            with torch.no_grad():
                err = (rl(x) - expected["out_adapter"]).abs().max().item()
                if spec["mixed"] is not None:
                    err = max(err, (rl(x, adapter_names=list(spec["mixed"])) - expected["out_mixed"]).abs().max().item())
                m2 = rl.merge_and_unload()
                err = max(err, (m2(x) - expected["out_merged"]).abs().max().item())
        reload["as_saved"] = {"ok": err <= 1e-5, "max_abs_err": err, "note": "deterministic"}
    except Exception as e:  # noqa: BLE001
        reload["as_saved"] = {"ok": False, "error": f"{type(e).__name__}: {e}"}

    checks = [{"key": k, "how": CHECK_HOW[k], "atol": 1e-05} for k in ["out_base", "out_adapter", "out_disabled", "out_merged", "merged.*"]]
    for combo in spec["combos"]:
        checks.append({"key": f"out_adapter.{combo}", "how": "output with only these adapters active ('+' joins several)", "atol": 1e-05})
    if spec["mixed"] is not None:
        checks.append({"key": "out_mixed", "how": CHECK_HOW["out_mixed"], "atol": 1e-05})
    checks.append({"key": "out_unmerged", "how": CHECK_HOW["out_unmerged"], "atol": 1e-05})
    checks.append({"key": "unmerged.*", "how": CHECK_HOW["unmerged.*"], "atol": 1e-05})
    checks.append({"key": "rng_init.<module>.{lora_A,lora_B}", "how": "init tensors; exact only with torch's CPU RNG consumed in PEFT's order after torch.manual_seed(seeds.rng)", "atol": 1e-06, "exact": False})

    cj = {
        "name": name,
        "model": model_name,
        "model_dims": dims,
        "dtype": "float32",
        "peft_version": peft.__version__,
        "torch_version": torch.__version__,
        "seeds": seeds,
        "lora_config": spec["adapters"][0][1],
        "adapters": [
            {"name": a, "dir": "adapter" if i == 0 else f"adapter/{a}", "lora_config": kw, "perturbed_params": perturbed[a]}
            for i, (a, kw) in enumerate(spec["adapters"])
        ],
        "active_adapters": active,
        "targeted_modules": {a: sorted(targeted[a]) for a in names},
        "modules_to_save_wrapped": sorted(mts),
        "trainable_tokens_wrapped": tokens,
        "mixed_adapter_names": spec["mixed"],
        "layers": layers,
        "trainable_params": trainable,
        "all_params": all_params,
        "print_trainable_parameters": ptp,
        "weighted_adapters": [],
        "warnings": warn_text(ws),
        "notes": spec["notes"] + ["generated by tests/python/make_layer_cases.py (stand-in for the hidden set)"],
        "checks": checks,
        "reload": reload,
    }
    with open(os.path.join(cdir, "case.json"), "w") as f:
        json.dump(cj, f, indent=2)
        f.write("\n")
    return reload


# ------------------------------------------------------------------------------------------------
# configs.json: the visible entries re-run with the set's dims


def error_info(e):
    bases = [c.__name__ for c in type(e).__mro__[1:] if c.__module__ == "builtins" and c not in (BaseException, object)]
    return {"type": type(e).__name__, "bases": bases, "message": str(e)}


def config_entries(dims_of, shapes, visible_configs):
    n_conv = shapes["convnet"]
    n_emb = shapes["embednet"][0]
    vocab = dims_of["embednet"]["vocab"]
    out = []
    for v in visible_configs:
        e = {"name": v["name"], "kwargs": copy.deepcopy(v["kwargs"]), "model": v["model"], "model_dims": dims_of[v["model"]]}
        if v["name"] == "tokens_index_out_of_range":
            e["kwargs"]["trainable_token_indices"] = {"emb": [1, vocab]}
        if "more_adapters" in v:
            e["more_adapters"] = copy.deepcopy(v["more_adapters"])
        if "forward" in v:
            f = copy.deepcopy(v["forward"])
            n = n_emb if v["model"] == "embednet" else n_conv
            cyc = list(v["forward"]["adapter_names"])
            if v["name"] == "mixed_wrong_length":
                f["adapter_names"] = (cyc * 3)[: n - 1]
            else:
                f["adapter_names"] = (cyc * 3)[:n]
            e["forward"] = f
        out.append(run_config_entry(e, shapes, v.get("same_as_init_true", False)))
    return out


def run_config_entry(e, shapes, same_as_true):
    stage = "config"
    pm = None
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        try:
            cfg = LoraConfig(**e["kwargs"])
            stage = "inject"
            model = MODELS[e["model"]](**e["model_dims"]).eval()
            torch.manual_seed(0)
            pm = get_peft_model(model, cfg)
            stage = "add_adapter"
            for a, kw in e.get("more_adapters", []):
                pm.add_adapter(a, LoraConfig(**kw))
            if "forward" in e:
                stage = "forward"
                f = e["forward"]
                pm.train(f["mode"] == "train")
                if f["merged"]:
                    pm.merge_adapter()
                shp = shapes[e["model"]]
                _, x = make_input(e["model"], e["model_dims"], shp, 0)
                with torch.no_grad():
                    pm(x, adapter_names=f["adapter_names"])
            else:
                stage = "save"
                with tempfile.TemporaryDirectory() as td:
                    pm.save_pretrained(td)
                    with open(os.path.join(td, "adapter_config.json")) as fh:
                        e["adapter_config"] = json.load(fh)
            ok, err = True, None
        except Exception as ex:  # noqa: BLE001
            ok, err = False, ex
    if pm is not None and (ok or stage == "forward"):
        e["targeted_modules"] = sorted(
            n for n, m in pm.base_model.model.named_modules() if isinstance(m, LoraLayer) and "default" in (set(m.lora_A) | set(m.lora_embedding_A))
        )
        e["trainable_tokens_wrapped"] = {
            n: {a: list(i) for a, i in m.token_adapter.token_indices.items()}
            for n, m in pm.base_model.model.named_modules() if isinstance(m, TrainableTokensWrapper)
        }
    if ok and same_as_true:
        kw = dict(e["kwargs"], init_lora_weights=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref_model = MODELS[e["model"]](**e["model_dims"]).eval()
            torch.manual_seed(0)
            ref = get_peft_model(ref_model, LoraConfig(**kw))
        a = {k: v for k, v in pm.state_dict().items() if "lora_" in k}
        b = {k: v for k, v in ref.state_dict().items() if "lora_" in k}
        e["same_as_init_true"] = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    e["ok"] = ok
    if not ok:
        e["stage"] = stage
        e["error"] = error_info(err)
    e["warnings"] = warn_text(ws)
    return e


# ------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="fixtures root; the set goes to OUT/peft-layers")
    ap.add_argument("--only", choices=["visible", "hidden", "all"], default="all")
    ap.add_argument("--seeds-from", default=None, help="visible set directory: reuse its cases' seeds")
    ap.add_argument("--seed-variant", type=int, default=1)
    ap.add_argument("--cases", default=None, help="comma-separated case names to write (default: all)")
    ap.add_argument("--configs-from", default=None, help="visible configs.json to re-run with the set's dims")
    args = ap.parse_args()

    root = os.path.join(args.out, "peft-layers")
    os.makedirs(root, exist_ok=True)
    specs = []
    if args.only in ("visible", "all"):
        specs += visible_cases()
    if args.only in ("hidden", "all"):
        specs += hidden_cases()
    if args.cases:
        want = set(args.cases.split(","))
        specs = [s for s in specs if s["name"] in want]

    results = {}
    for s in specs:
        seeds = seeds_for(s["name"], args.seed_variant)
        if args.seeds_from and os.path.exists(os.path.join(args.seeds_from, s["name"], "case.json")):
            with open(os.path.join(args.seeds_from, s["name"], "case.json")) as f:
                seeds = json.load(f)["seeds"]
        try:
            r = generate_case(s, root, seeds)
            results[s["name"]] = r["as_saved"]
            print(f"{s['name']}: reload {r['as_saved']}", flush=True)
        except Exception as e:  # noqa: BLE001
            shutil.rmtree(os.path.join(root, s["name"]), ignore_errors=True)
            print(f"{s['name']}: PEFT REFUSED / generator error: {type(e).__name__}: {e}", flush=True)
            results[s["name"]] = {"ok": False, "error": f"{type(e).__name__}: {e}"}

    hidden = args.only == "hidden"
    dims_of = ({"convnet": HID_CONV, "conv1dnet": HID_C1D, "embednet": HID_EMB} if hidden
               else {"convnet": VIS_CONV, "conv1dnet": VIS_C1D, "embednet": VIS_EMB})
    shapes = HID_SHAPES if hidden else VIS_SHAPES
    tables = []
    if args.configs_from:
        with open(args.configs_from) as f:
            vis = json.load(f)
        entries = config_entries(dims_of, shapes, vis)
        with open(os.path.join(root, "configs.json"), "w") as f:
            f.write("[\n" + ",\n".join(json.dumps(e) for e in entries) + "\n]\n")
        tables.append("configs.json")
    cases = sorted(d for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "case.json")))
    manifest = {
        "suite": "layers",
        "generator": "tests/python/make_layer_cases.py",
        "format": "shared/fixtures/README.md section 8",
        "variant": "regenerated-" + args.only,
        "seed": args.seed_variant,
        "peft_version": peft.__version__,
        "torch_version": torch.__version__,
        "model_dims": dims_of,
        "input_shapes": shapes,
        "cases": cases,
        "tables": tables,
        "failed": [n for n, r in results.items() if not r.get("ok")],
    }
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
