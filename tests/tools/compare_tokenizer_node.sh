#!/usr/bin/env bash
# Compares peft's byte-level BPE with Hugging Face tokenizers' Rust core on a machine without
# Python `tokenizers`: installs the npm binding `tokenizers@0.23.2` into a temp dir (npm registry),
# trains a ByteLevel BPE on the shipped corpus (minus held-out tails) with it, writes the same
# model as vocab.json + merges.txt, and encodes the corpus documents, groups of documents and the
# tricky strings of compare_tokenizer.py with HF and with `peft_tokenize` (both readers).
#   bash tests/tools/compare_tokenizer_node.sh BUILD_DIR
# Prints one line per reader and "N passed, M failed" (strings); exit 1 on any difference.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="$(cd "$1" && pwd)"
tool="$build/tests/peft_tokenize"
[ -x "$tool" ] || { echo "no $tool (build --target peft_tokenize)"; exit 2; }
work="$(mktemp -d /tmp/peft_tokcmp_node.XXXXXX)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm install --silent --no-audit --no-fund tokenizers@0.23.2 >/dev/null)
export NODE_PATH="$work/node_modules"
python3 - "$root" "$work" "$tool" <<'PY'
import json, os, subprocess, sys
root, work, tool = sys.argv[1:4]
sys.path.insert(0, os.path.join(root, "tests", "python"))
from compare_tokenizer import TRICKY
train, strings = [], list(TRICKY)
for part in ("part_a.txt", "part_b.txt"):
    docs = [d for d in open(os.path.join(root, "data", "corpus", part), encoding="utf-8").read().split("\n\n") if d.strip()]
    cut = max(1, len(docs) // 10)
    train += docs[:-cut]
    strings += docs + ["\n\n".join(docs[i:i + 3]) for i in range(0, len(docs), 3)]
open(os.path.join(work, "train.txt"), "w", encoding="utf-8").write("\n\n".join(train))
js = os.path.join(root, "tests", "tools", "hf_tokenizers.js")
tj = os.path.join(work, "hf")
subprocess.run(["node", js, "train", tj, os.path.join(work, "train.txt")], check=True)
d = json.load(open(os.path.join(tj, "tokenizer.json"), encoding="utf-8"))
vm = os.path.join(work, "vm")
os.makedirs(vm)
vocab = dict(d["model"]["vocab"])
for a in d["added_tokens"]:
    vocab[a["content"]] = a["id"]
json.dump(vocab, open(os.path.join(vm, "vocab.json"), "w", encoding="utf-8"), ensure_ascii=False)
with open(os.path.join(vm, "merges.txt"), "w", encoding="utf-8") as fh:
    fh.write("#version: 0.2\n")
    for m in d["model"]["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ")
        fh.write(f"{a} {b}\n")
json.dump(strings, open(os.path.join(work, "strings.json"), "w"))
with open(os.path.join(work, "strings.jsonl"), "w") as fh:
    for s in strings:
        fh.write(json.dumps(s) + "\n")
subprocess.run(["node", js, "encode", os.path.join(tj, "tokenizer.json"), os.path.join(work, "strings.json"),
                os.path.join(work, "ref.json")], check=True)
ref = json.load(open(os.path.join(work, "ref.json")))
passed = failed = 0
for name, dir_ in (("tokenizer.json", tj), ("vocab.json+merges.txt", vm)):
    out = subprocess.run([tool, dir_, os.path.join(work, "strings.jsonl")], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    bad = 0
    for s, r, o in zip(strings, ref, out):
        if r == json.loads(o):
            passed += 1
        else:
            failed += 1
            bad += 1
            print(f"FAIL {name} {json.dumps(s[:60])}")
    print(f"{name}: {len(strings)} strings, {sum(map(len, ref))} tokens, vocab {len(d['model']['vocab'])}, "
          f"{len(d['model']['merges'])} merges: {bad} differ")
for part in ("part_a.txt", "part_b.txt"):
    print(subprocess.run([tool, "--bench", tj, os.path.join(root, "data", "corpus", part)], capture_output=True,
                         text=True).stdout.strip())
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
