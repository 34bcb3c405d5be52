#!/usr/bin/env bash
# ctest: peft-merge end to end on one fixture case (the first in the manifest with a plain LoRA
# adapter). Checks exit codes (0 merged, 1 error with one stderr line, 2 usage), that the output
# holds model.safetensors, that an existing OUT is refused without --force and left unchanged on
# errors, and that --force replaces it.
#   tests/merge_smoke.sh PATH/TO/peft-merge FIXTURES_DIR SCRATCH_DIR
set -u
merge="$1"
fixtures="${PEFT_FIXTURES:-$2}"
[ -f "$fixtures/peft/manifest.json" ] && fixtures="$fixtures/peft"
tmp="$3"
rm -rf "$tmp" && mkdir -p "$tmp"
fails=0
check() {  # name, condition result
  if [ "$2" -eq 0 ]; then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi
}

case_dir=""
for c in $(grep -o '"[a-z0-9_]*"' "$fixtures/manifest.json" | tr -d '"'); do
  cfg="$fixtures/$c/adapter/adapter_config.json"
  if [ -f "$cfg" ] && grep -Eq '"init_lora_weights": (true|false)' "$cfg"; then case_dir="$fixtures/$c"; break; fi
done
if [ -z "$case_dir" ]; then echo "FAIL no plain LoRA case in $fixtures"; exit 1; fi
echo "case: $case_dir"

"$merge" --base "$case_dir/base_model.safetensors" --adapter "$case_dir/adapter" --out "$tmp/out" >"$tmp/stdout" 2>"$tmp/stderr"
check "merge exits 0" $?
[ -s "$tmp/out/model.safetensors" ]; check "model.safetensors written" $?
grep -q "merged 1 adapter" "$tmp/stdout"; check "summary on stdout" $?

sum_before=$(cat "$tmp/out/model.safetensors" | md5sum)
"$merge" --base "$case_dir/base_model.safetensors" --adapter "$case_dir/adapter" --out "$tmp/out" >"$tmp/stdout" 2>"$tmp/stderr"
rc=$?
[ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/stderr")" -eq 1 ] && [ ! -s "$tmp/stdout" ]; check "existing OUT refused (exit $rc, one line)" $?
grep -q -- "--force" "$tmp/stderr"; check "hint names --force" $?

# An adapter whose init rewrote the base: refused, OUT unchanged even with --force.
mkdir -p "$tmp/pissa" && cp "$case_dir/adapter/adapter_model.safetensors" "$tmp/pissa/"
sed -E 's/"init_lora_weights": (true|false)/"init_lora_weights": "pissa"/' "$case_dir/adapter/adapter_config.json" >"$tmp/pissa/adapter_config.json"
"$merge" --base "$case_dir/base_model.safetensors" --adapter "$tmp/pissa" --out "$tmp/out" --force >"$tmp/stdout" 2>"$tmp/stderr"
rc=$?
[ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/stderr")" -eq 1 ]; check "pissa adapter refused (exit $rc)" $?
[ "$(cat "$tmp/out/model.safetensors" | md5sum)" = "$sum_before" ]; check "OUT unchanged after the error" $?

"$merge" --base "$case_dir/base_model.safetensors" --adapter "$case_dir/adapter" --weight 0.5 --out "$tmp/out" --force --dtype bfloat16 >"$tmp/stdout" 2>"$tmp/stderr"
check "--force --weight --dtype exit 0" $?
[ "$(cat "$tmp/out/model.safetensors" | md5sum)" != "$sum_before" ]; check "OUT replaced" $?
[ -z "$(ls -A "$tmp" | grep peft-merge)" ]; check "no temporary directory left" $?

"$merge" --base x >/dev/null 2>&1; rc=$?; [ "$rc" -eq 2 ]; check "missing arguments exit 2 (got $rc)" $?
"$merge" --bogus >/dev/null 2>&1; rc=$?; [ "$rc" -eq 2 ]; check "unknown option exit 2 (got $rc)" $?
"$merge" --base x --adapter y --out z --dtype int8 >/dev/null 2>"$tmp/stderr"; rc=$?
[ "$rc" -eq 1 ]; check "bad dtype exit 1 (got $rc)" $?

[ "$fails" -eq 0 ] && echo "all passed" || echo "$fails failed"
[ "$fails" -eq 0 ]
