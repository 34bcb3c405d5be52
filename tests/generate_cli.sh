#!/usr/bin/env bash
# End-to-end tests of peft-generate on builtin:tiny-gpt2 (seconds each):
#   generate_cli.sh CASE PEFT_GENERATE SCRATCH_DIR [PEFT_FINETUNE]
# CASE: smoke | sampling | adapters | chat | bad_args
set -uo pipefail
case_name=$1
tool=$2
scratch=$3/$case_name
finetune=${4:-}
rm -rf "$scratch"
mkdir -p "$scratch"
cd "$scratch" || exit 1

fail() { echo "FAIL ($case_name): $*" >&2; exit 1; }

case $case_name in
smoke)
  # Greedy, streamed: exit 0, the completion on stdout (16 byte tokens of a random model may
  # include a newline, so count bytes), counts and speed on stderr.
  "$tool" --model builtin:tiny-gpt2 --prompt "Hello" --max-new-tokens 16 > out.txt 2> err.txt \
    || { cat out.txt err.txt; fail "exit code $?"; }
  [ -s out.txt ] || fail "no completion on stdout"
  grep -q '1 prompt(s), 5 prompt tokens, 16 generated tokens' err.txt || { cat err.txt; fail "token counts"; }
  grep -q 'tokens/s' err.txt || { cat err.txt; fail "no tokens/s on stderr"; }
  # Greedy is deterministic; the llama builtin runs too.
  "$tool" --model builtin:tiny-gpt2 --prompt "Hello" --max-new-tokens 16 > again.txt 2> /dev/null || fail "second run"
  cmp -s out.txt again.txt || fail "greedy output differs between two runs"
  "$tool" --model builtin:tiny-llama --prompt "Hi" --max-new-tokens 4 --repetition-penalty 1.3 > llama.txt 2> err.txt \
    || { cat err.txt; fail "tiny-llama"; }
  # A 4-bit (NF4) base generates too, deterministically.
  "$tool" --model builtin:tiny-llama --load-in-4bit nf4 --prompt "Hi" --max-new-tokens 6 > q1.txt 2> err.txt \
    || { cat err.txt; fail "--load-in-4bit nf4"; }
  grep -q '1 prompt(s), 2 prompt tokens, ' err.txt || { cat err.txt; fail "4-bit token counts"; }
  "$tool" --model builtin:tiny-llama --load-in-4bit nf4 --prompt "Hi" --max-new-tokens 6 > q2.txt 2> /dev/null \
    || fail "--load-in-4bit second run"
  cmp -s q1.txt q2.txt || fail "4-bit greedy output differs between two runs"
  ;;
sampling)
  # Same seed: same text; the JSONL form gives one parseable line per prompt, in order.
  args=(--model builtin:tiny-llama --do-sample --temperature 0.8 --top-k 40 --top-p 0.9 --max-new-tokens 12)
  "$tool" "${args[@]}" --seed 3 --prompt "abc" > a.txt 2> err.txt || { cat err.txt; fail "sampling run"; }
  "$tool" "${args[@]}" --seed 3 --prompt "abc" > b.txt 2> /dev/null || fail "sampling run 2"
  cmp -s a.txt b.txt || fail "--seed 3 gave two different texts"
  printf '{"prompt": "one"}\n\n{"prompt": "a longer second prompt"}\n{"prompt": "3"}\n' > prompts.jsonl
  "$tool" "${args[@]}" --seed 1 --prompts prompts.jsonl --batch-size 2 > out.jsonl 2> err.txt \
    || { cat err.txt; fail "--prompts run"; }
  [ "$(wc -l < out.jsonl)" -eq 3 ] || { cat out.jsonl; fail "expected 3 JSON lines"; }
  if command -v python3 > /dev/null; then
    python3 - <<'PY' || fail "output JSONL"
import json
rows = [json.loads(l) for l in open("out.jsonl")]
assert [r["index"] for r in rows] == [0, 1, 2], rows
assert [r["prompt"] for r in rows] == ["one", "a longer second prompt", "3"], rows
assert all(r["adapter"] == "__base__" and 1 <= r["new_tokens"] <= 12 for r in rows), rows
PY
  fi
  ;;
adapters)
  [ -n "$finetune" ] || { echo "no peft-finetune given: skipped"; exit 0; }
  for i in $(seq 1 40); do printf 'Line %d: the quick brown fox jumps over the lazy dog.\n\n' "$i"; done > data.txt
  cat > train.yaml <<YAML
base_model: builtin:tiny-gpt2
output_dir: out
data:
  file: data.txt
  heldout_fraction: 0.1
training:
  steps: 3
  batch_size: 2
  seq_len: 16
  lr: 1e-2
  warmup_steps: 0
  seed: 1
  threads: 1
  eval_every: 3
  eval_batches: 1
  save_every: 3
  log_every: 1
lora:
  r: 4
  lora_alpha: 8
  target_modules: [c_attn, c_fc]
  fan_in_fan_out: true
YAML
  "$finetune" --config train.yaml > ft.txt 2>&1 || { cat ft.txt; fail "peft-finetune"; }
  ad=out/adapter
  printf '{"prompt": "The quick", "adapter": "a"}\n{"prompt": "The", "adapter": "__base__"}\n{"prompt": "Line 1", "adapter": "b"}\n{"prompt": "x"}\n' > p.jsonl
  "$tool" --model builtin:tiny-gpt2 --adapter a=$ad --adapter b=$ad --prompts p.jsonl --max-new-tokens 6 \
    > mixed.jsonl 2> err.txt || { cat err.txt; fail "mixed batch run"; }
  [ "$(wc -l < mixed.jsonl)" -eq 4 ] || { cat mixed.jsonl err.txt; fail "expected 4 lines"; }
  grep -q '"adapter": "a"' mixed.jsonl || fail "the line without an adapter uses the first one (a)"
  # One adapter, active or merged: the same greedy text.
  "$tool" --model builtin:tiny-gpt2 --adapter $ad --prompt "The quick" --max-new-tokens 8 > active.txt 2> /dev/null \
    || fail "adapter run"
  "$tool" --model builtin:tiny-gpt2 --adapter $ad --merge --prompt "The quick" --max-new-tokens 8 > merged.txt 2> /dev/null \
    || fail "--merge run"
  cmp -s active.txt merged.txt || fail "merged model's text differs from the active adapter's"
  # An adapter a line names must be loaded.
  printf '{"prompt": "x", "adapter": "c"}\n' > bad.jsonl
  "$tool" --model builtin:tiny-gpt2 --adapter a=$ad --prompts bad.jsonl > /dev/null 2> err.txt
  [ $? -eq 2 ] || fail "unknown adapter in the prompt file: exit code"
  grep -q 'bad.jsonl:1: adapter `c` was not loaded' err.txt || { cat err.txt; fail "unknown adapter message"; }
  ;;
chat)
  # --chat renders the prompt with the model directory's chat template (a copy of the llama
  # fixture checkpoint, vocab 320, so the byte tokenizer applies): the prompt token count is the
  # byte length of the rendered ChatML text, system message first.
  root="$(cd "$(dirname "$0")" && pwd)"
  cp -r "$root/fixtures/hf_models/llama/base" model || fail "no llama fixture"
  cat > model/tokenizer_config.json <<'JSON'
{"bos_token": "<s>", "eos_token": "</s>",
 "chat_template": "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"}
JSON
  "$tool" --model model --chat --system "Be brief." --prompt "Hi" --max-new-tokens 3 > out.txt 2> err.txt \
    || { cat err.txt; fail "exit code"; }
  rendered=$(printf '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n' | wc -c)
  grep -q "1 prompt(s), $rendered prompt tokens" err.txt || { cat err.txt; fail "expected $rendered prompt tokens"; }
  rm model/tokenizer_config.json
  "$tool" --model model --chat --prompt "Hi" > out.txt 2> err.txt && fail "--chat without a template succeeded"
  grep -q 'has no chat template' err.txt || { cat err.txt; fail "--chat without a template: message"; }
  ;;
bad_args)
  expect() {  # expect CODE PATTERN ARGS...: exit code CODE, first stderr line matching PATTERN
    local code=$1 pattern=$2
    shift 2
    "$tool" "$@" > out.txt 2> err.txt
    local rc=$?
    [ $rc -eq "$code" ] || { cat err.txt; fail "$*: exit code $rc, expected $code"; }
    head -n 1 err.txt | grep -q -- "$pattern" || { cat err.txt; fail "$*: message"; }
    [ -s out.txt ] && fail "$*: wrote to stdout"
    return 0
  }
  expect 2 'peft-generate: --model is required' --prompt x
  expect 2 'exactly one of --prompt' --model builtin:tiny-gpt2
  expect 2 '--max-new-tokens wants an integer >= 1' --model builtin:tiny-gpt2 --prompt x --max-new-tokens 0
  expect 2 'unknown argument `--bogus`' --model builtin:tiny-gpt2 --prompt x --bogus
  expect 2 'several adapters need names' --model builtin:tiny-gpt2 --prompt x --adapter d1 --adapter d2
  expect 2 'GenerationConfig.temperature = 0.0' --model builtin:tiny-gpt2 --prompt x --do-sample --temperature 0
  expect 2 'GenerationConfig.top_p' --model builtin:tiny-gpt2 --prompt x --do-sample --top-p 1.5
  expect 2 '--threads wants at most' --model builtin:tiny-gpt2 --prompt x --threads 100000
  expect 2 '--threads wants an integer >= 1' --model builtin:tiny-gpt2 --prompt x --threads 99999999999999999999
  expect 2 '--dtype wants float32' --model builtin:tiny-gpt2 --prompt x --dtype int8
  expect 2 '--load-in-4bit wants nf4 or fp4' --model builtin:tiny-llama --prompt x --load-in-4bit int4
  expect 2 '--merge needs exactly one --adapter' --model builtin:tiny-gpt2 --prompt x --merge
  printf 'not json\n' > bad.jsonl
  expect 2 'bad.jsonl:1: not JSON' --model builtin:tiny-gpt2 --prompts bad.jsonl
  expect 1 'peft-generate: ' --model "$scratch/missing-model" --prompt x
  expect 1 'peft-generate: ' --model builtin:tiny-gpt2 --adapter "$scratch/missing-adapter" --prompt x
  ;;
*)
  fail "unknown case"
  ;;
esac
echo "ok ($case_name)"
