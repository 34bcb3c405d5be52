#!/usr/bin/env python3
"""Compare peft-cpp's byte-level BPE with Hugging Face `tokenizers` on the shipped corpus.

    python3 tests/python/compare_tokenizer.py BUILD_DIR [--vocab-size 2000] [--keep DIR]

Needs `tokenizers` (tested against the 0.2x API) and BUILD_DIR/tests/peft_tokenize (built with the
tests). No network. Steps:
  1. train HF's ByteLevelBPETokenizer (vocab ~2000, special token <|endoftext|>) on
     data/corpus/part_a.txt + part_b.txt minus their held-out tails (last 10 % of documents);
  2. save it both ways: tokenizer.json (tok.save) and vocab.json + merges.txt (tok.save_model),
     in two separate directories so peft's load_tokenizer picks each reader in turn;
  3. encode the held-out documents, every held-out line, and tricky strings (contractions, digits,
     unicode, multiple spaces, newlines, <|endoftext|>) with HF and with `peft_tokenize` on both
     directories (transformers' GPT2Tokenizer on vocab.json/merges.txt is reported as INFO);
  4. print PASS/FAIL per string and a summary line "N passed, M failed"; exit 1 on any failure.
Also prints the encode speed of both on the whole corpus. Runs in well under a minute.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = [os.path.join(ROOT, "data", "corpus", p) for p in ("part_a.txt", "part_b.txt")]

TRICKY = [
    "Hello world",
    "I'm sure you're right; they've said we'll go, he'd agree and it's done.",
    "DON'T SHOUT, Y'ALL'RE LOUD",
    "can''t ''s 's 'S",
    "numbers: 0 7 42 1234567890 3.14159 1,000,000 2024-06-01 12:30",
    "x1y22z333 abc123def",
    "multiple  spaces   before    words",
    "  leading spaces and trailing spaces   ",
    "tabs\tand\t\tmore\ttabs",
    "line one\nline two\n\nparagraph\n\n\nthree newlines\n",
    "\n\nstarts with newlines",
    "windows\r\nline\r\nends",
    "punctuation!!! ??? ... --- (brackets) [x] {y} \"quotes\" 'single'",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber stra\u00dfe",
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440",  # Привет мир
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",  # Ελληνικά
    "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3002\u4e2d\u6587\uff0c\u6807\u70b9",  # 日本語の文章。中文，标点
    "\u0661\u0662\u0663 \u0968\u0969 \u00bd \u00b2 x\u00b2",  # Arabic-Indic / Devanagari digits, ½ ²
    "emoji \U0001F600\U0001F600 ok \u2764\ufe0f",
    "no\u00a0break\u2003em\u3000ideographic",
    "<|endoftext|>",
    "first document<|endoftext|>second document",
    " <|endoftext|> spaced <|endoftext|>",
    "<|endoftext|><|endoftext|>",
    "almost <|endoftext| special",
    "The Senate and House of Representatives",
    "",
]


def find_tool(build_dir):
    for rel in ("tests/peft_tokenize", "peft_tokenize", "tests/Release/peft_tokenize.exe"):
        p = os.path.join(build_dir, rel)
        if os.path.isfile(p):
            return p
    sys.exit(f"peft_tokenize not found under {build_dir} (build it: --target peft_tokenize)")


def documents(path):
    with open(path, encoding="utf-8") as fh:
        return [d for d in fh.read().split("\n\n") if d.strip()]


def peft_encode(tool, tok_dir, strings, work):
    inp = os.path.join(work, "inputs.jsonl")
    with open(inp, "w", encoding="utf-8") as fh:
        for s in strings:
            fh.write(json.dumps(s) + "\n")  # ensure_ascii: newlines etc. stay on one line
    out = subprocess.run([tool, tok_dir, inp], capture_output=True, text=True, check=True).stdout
    rows = [json.loads(l) for l in out.splitlines()]
    if len(rows) != len(strings):
        sys.exit(f"peft_tokenize returned {len(rows)} rows for {len(strings)} inputs")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build_dir")
    ap.add_argument("--vocab-size", type=int, default=2000)
    ap.add_argument("--keep", help="write the trained tokenizer files here instead of a temp dir")
    args = ap.parse_args()
    from tokenizers import ByteLevelBPETokenizer, Tokenizer

    tool = find_tool(args.build_dir)
    work = args.keep or tempfile.mkdtemp(prefix="peft_tokcmp_")
    os.makedirs(work, exist_ok=True)

    train_docs, heldout_docs = [], []
    for path in CORPUS:
        docs = documents(path)
        cut = max(1, len(docs) // 10)
        train_docs += docs[:-cut]
        heldout_docs += docs[-cut:]
    train_file = os.path.join(work, "train.txt")
    with open(train_file, "w", encoding="utf-8") as fh:
        fh.write("\n\n".join(train_docs))

    t0 = time.time()
    hf = ByteLevelBPETokenizer()  # GPT-2 setup: add_prefix_space=False, ByteLevel pre-tokenizer
    hf.train(files=[train_file], vocab_size=args.vocab_size, min_frequency=2,
             special_tokens=["<|endoftext|>"], show_progress=False)
    json_dir = os.path.join(work, "tokenizer_json")
    vm_dir = os.path.join(work, "vocab_merges")
    os.makedirs(json_dir, exist_ok=True)
    os.makedirs(vm_dir, exist_ok=True)
    hf.save(os.path.join(json_dir, "tokenizer.json"))
    hf.save_model(vm_dir)  # vocab.json + merges.txt
    print(f"trained HF ByteLevelBPETokenizer: vocab {hf.get_vocab_size()} in {time.time() - t0:.1f} s -> {work}")
    reference = Tokenizer.from_file(os.path.join(json_dir, "tokenizer.json"))

    strings = [("tricky", s) for s in TRICKY]
    strings += [("heldout-doc", d) for d in heldout_docs]
    strings += [("heldout-line", l) for d in heldout_docs for l in d.split("\n") if l.strip()]
    texts = [s for _, s in strings]
    expected = [reference.encode(s).ids for s in texts]
    # The in-memory tokenizer and the reloaded file must agree (sanity of the reference itself).
    assert expected == [hf.encode(s).ids for s in texts]

    runs = [("tokenizer.json", peft_encode(tool, json_dir, texts, work)),
            ("vocab+merges", peft_encode(tool, vm_dir, texts, work))]
    try:  # optional third opinion: transformers' GPT-2 tokenizer on vocab.json/merges.txt
        from transformers import GPT2Tokenizer
        gpt2 = GPT2Tokenizer(vocab_file=os.path.join(vm_dir, "vocab.json"),
                             merges_file=os.path.join(vm_dir, "merges.txt"))
        via_tf = [gpt2.encode(s, add_special_tokens=False) for s in texts]
        agree = sum(a == b for a, b in zip(via_tf, expected))
        # Informational: transformers vs HF tokenizers (peft is judged against HF tokenizers only).
        print(f"INFO transformers GPT2Tokenizer(vocab.json, merges.txt) agrees with HF tokenizers on "
              f"{agree}/{len(texts)} strings")
    except Exception as e:  # noqa: BLE001 - report and carry on
        print(f"SKIP transformers GPT2Tokenizer comparison: {type(e).__name__}: {e}")

    passed = failed = 0
    for name, got in runs:
        for (kind, s), exp, ids in zip(strings, expected, got):
            label = f"{name} {kind} {json.dumps(s[:50])}"
            if ids == exp:
                passed += 1
                if kind == "tricky":
                    print(f"PASS {label}")
            else:
                failed += 1
                first = next((i for i, (a, b) in enumerate(zip(exp, ids)) if a != b), min(len(exp), len(ids)))
                print(f"FAIL {label}: first difference at token {first}: "
                      f"HF {exp[max(0, first - 2):first + 4]} vs {ids[max(0, first - 2):first + 4]} "
                      f"(lengths {len(exp)} vs {len(ids)})")
        print(f"{name}: compared {len(texts)} strings ({sum(map(len, expected))} tokens)")

    # Speed on the whole corpus (HF: single call, Rust; peft: its --bench mode).
    corpus = "".join(open(p, encoding="utf-8").read() for p in CORPUS)
    t0 = time.time()
    n = len(reference.encode(corpus).ids)
    dt = time.time() - t0
    print(f"HF tokenizers: {len(corpus.encode())} bytes -> {n} tokens in {dt:.3f} s ({len(corpus.encode()) / dt / 1e6:.2f} MB/s)")
    for path in CORPUS:
        print(subprocess.run([tool, "--bench", json_dir, path], capture_output=True, text=True).stdout.strip())

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
