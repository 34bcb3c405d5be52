#!/usr/bin/env bash
# ctest: peft-merge end to end on one fixture case (the first in the manifest with a plain LoRA
# adapter). Checks exit codes (0 merged, 1 error with one stderr line, 2 usage), that the output
# holds model.safetensors, that an existing OUT is refused without --force and left unchanged on
# errors, and that --force replaces it; refused inputs (issue 19): an index naming config.json as
# a shard, a side file symlinked out of the base, a FIFO for the weights; a killed run's scratch
# directory removed by the next run.
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

# Issue 19: inputs that must not be trusted. Each: exit 1, one stderr line, OUT unchanged, fast.
sum_before=$(cat "$tmp/out/model.safetensors" | md5sum)
refused() {  # name, then the merge arguments
  local name="$1"; shift
  timeout $((10 * ${PEFT_TEST_TIME_SCALE:-1})) "$merge" "$@" --out "$tmp/out" --force >"$tmp/stdout" 2>"$tmp/stderr"
  local rc=$?
  [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/stderr")" -eq 1 ] && [ ! -s "$tmp/stdout" ]; check "$name refused (exit $rc): $(cat "$tmp/stderr")" $?
  [ "$(cat "$tmp/out/model.safetensors" | md5sum)" = "$sum_before" ]; check "$name: OUT unchanged" $?
}
# A sharded base whose index names config.json as a shard (it would be overwritten by the side file).
mkdir -p "$tmp/collide"
cp "$case_dir/base_model.safetensors" "$tmp/collide/config.json"
key=$(head -c 4096 "$case_dir/base_model.safetensors" | grep -ao '"[A-Za-z0-9_.]*":{"dtype"' | head -1 | cut -d'"' -f2)
printf '{"metadata": {}, "weight_map": {"%s": "config.json"}}' "$key" >"$tmp/collide/model.safetensors.index.json"
refused "shard named config.json" --base "$tmp/collide" --adapter "$case_dir/adapter"
# A side file linking out of the base directory.
mkdir -p "$tmp/linked" && cp "$case_dir/base_model.safetensors" "$tmp/linked/model.safetensors"
echo "secret" >"$tmp/secret.txt" && ln -s "$tmp/secret.txt" "$tmp/linked/tokenizer.json"
refused "side file symlinked out of the base" --base "$tmp/linked" --adapter "$case_dir/adapter"
# A FIFO in place of the base weights.
mkdir -p "$tmp/fifo" && mkfifo "$tmp/fifo/model.safetensors"
refused "FIFO base weights" --base "$tmp/fifo" --adapter "$case_dir/adapter"
# Scratch directories of a run that was killed are removed by the next run.
sleep 0 & dead=$!; wait "$dead"
mkdir -p "$tmp/.out.peft-merge-tmp-$dead" && echo partial >"$tmp/.out.peft-merge-tmp-$dead/model.safetensors"
"$merge" --base "$case_dir/base_model.safetensors" --adapter "$case_dir/adapter" --out "$tmp/out" --force >/dev/null 2>&1
check "merge after a killed run exits 0" $?
[ ! -e "$tmp/.out.peft-merge-tmp-$dead" ]; check "the killed run's scratch directory is gone" $?

"$merge" --base x >/dev/null 2>&1; rc=$?; [ "$rc" -eq 2 ]; check "missing arguments exit 2 (got $rc)" $?
"$merge" --bogus >/dev/null 2>&1; rc=$?; [ "$rc" -eq 2 ]; check "unknown option exit 2 (got $rc)" $?
"$merge" --base x --adapter y --out z --quantized-base dense >/dev/null 2>&1; rc=$?; [ "$rc" -eq 2 ]
check "unknown --quantized-base exit 2 (got $rc)" $?
"$merge" --base x --adapter y --out z --dtype int8 >/dev/null 2>"$tmp/stderr"; rc=$?
[ "$rc" -eq 1 ]; check "bad dtype exit 1 (got $rc)" $?

[ "$fails" -eq 0 ] && echo "all passed" || echo "$fails failed"
[ "$fails" -eq 0 ]
