#!/usr/bin/env bash
# ctest: peft-inspect over tests/data. Every bad adapter directory must exit 1 with exactly one
# line on stderr, nothing on stdout, within a second; the good adapters must exit 0; bad usage 2.
# Also: base_model_name_or_path is never read (a secret file it names is not printed), a PEFT
# GPT-2 adapter passes with --base, the config checks of peft-merge apply, a FIFO does not hang.
#   tests/inspect_bad_inputs.sh PATH/TO/peft-inspect tests/data [tests/fixtures/peft]
set -u
inspect="$1"
data="$2"
fixtures="${3:-}"
[ -n "$fixtures" ] && [ -f "$fixtures/peft/manifest.json" ] && fixtures="$fixtures/peft"
fails=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
time_scale=${PEFT_TEST_TIME_SCALE:-1}  # scripts/asan.sh: instrumented builds are slower
ms() { echo $(( $(date +%s%N) / 1000000 )); }

for dir in "$data"/bad/*/; do
  name=$(basename "$dir")
  [ "$name" = yaml ] && continue
  args=()  # the base is only read when named with --base
  [ "$name" = wrong_base_model ] && args=(--base "$data/tiny_mlp/base_model.safetensors")
  t0=$(ms)
  timeout $((5 * time_scale)) "$inspect" "${args[@]}" "$dir" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  t=$(( $(ms) - t0 ))
  lines=$(wc -l <"$tmp/err")
  if [ "$rc" -ne 1 ] || [ "$lines" -ne 1 ] || [ -s "$tmp/out" ] || [ "$t" -ge $((1000 * time_scale)) ]; then
    echo "FAIL $name: exit $rc (want 1), $lines stderr lines (want 1), stdout $(wc -c <"$tmp/out") bytes, ${t} ms"
    head -c 600 "$tmp/err"; echo
    fails=$((fails + 1))
  else
    echo "ok   $name (${t} ms): $(cat "$tmp/err")"
  fi
done

for dir in "$data"/tiny_mlp/adapter "$data"/tiny_mlp/dora_adapter; do
  if ! "$inspect" --base "$data/tiny_mlp/base_model.safetensors" "$dir" >"$tmp/out" 2>"$tmp/err" || [ -s "$tmp/err" ]; then
    echo "FAIL good adapter $dir:"; cat "$tmp/err"; fails=$((fails + 1))
  elif ! grep -q "all 2 modules fit" "$tmp/out"; then
    echo "FAIL good adapter $dir: base model not checked"; cat "$tmp/out"; fails=$((fails + 1))
  fi
done
# Without --base, base_model_name_or_path is only reported.
"$inspect" "$data/tiny_mlp/adapter" >"$tmp/out" 2>&1
grep -q "exists on this machine" "$tmp/out" || { echo "FAIL base_model_name_or_path not reported:"; cat "$tmp/out"; fails=$((fails + 1)); }

# A copy of the good adapter with one config change ($1: sed expression); prints its directory.
variant() {
  local d="$tmp/variant_$RANDOM"
  mkdir -p "$d" && cp "$data/tiny_mlp/adapter/adapter_model.safetensors" "$d/"
  sed "$1" "$data/tiny_mlp/adapter/adapter_config.json" >"$d/adapter_config.json"
  echo "$d"
}
# base_model_name_or_path naming a secret file (and /etc/shadow): no byte of it is printed.
printf 'root:*:SECRET-BYTES-17:0:99999:7:::\n' >"$tmp/secret.safetensors"
for target in "$tmp/secret.safetensors" /etc/shadow; do
  d=$(variant "s|\"base_model_name_or_path\": [^,]*|\"base_model_name_or_path\": \"$target\"|")
  "$inspect" "$d" >"$tmp/out" 2>&1; rc=$?
  if [ "$rc" -ne 0 ] || grep -q "SECRET-BYTES\|root:" "$tmp/out"; then
    echo "FAIL base_model_name_or_path $target: exit $rc (want 0) or file bytes printed:"; cat "$tmp/out"; fails=$((fails + 1))
  fi
done
# The config checks peft-merge makes: r 0, an invalid rank_pattern or exclude_modules regex.
for edit in 's|"r": 2|"r": 0|' 's|"r": 2,|"r": 2, "rank_pattern": {"lin(": 2},|' \
            's|"r": 2,|"r": 2, "exclude_modules": "lin[0-9",|'; do
  d=$(variant "$edit")
  cmp -s "$d/adapter_config.json" "$data/tiny_mlp/adapter/adapter_config.json" && { echo "FAIL edit $edit changed nothing"; fails=$((fails + 1)); }
  timeout $((5 * time_scale)) "$inspect" "$d" >"$tmp/out" 2>"$tmp/err"; rc=$?
  if [ "$rc" -ne 1 ] || [ "$(wc -l <"$tmp/err")" -ne 1 ] || [ -s "$tmp/out" ]; then
    echo "FAIL config edit $edit: exit $rc (want 1)"; cat "$tmp/err" "$tmp/out"; fails=$((fails + 1))
  else
    echo "ok   config edit $edit: $(cat "$tmp/err")"
  fi
done
# A FIFO in place of the weights or of --base: refused at once, not waited on.
d=$(variant 's|x|x|'); rm "$d/adapter_model.safetensors"; mkfifo "$d/adapter_model.safetensors"
timeout $((5 * time_scale)) "$inspect" "$d" >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" -eq 1 ] && grep -q "not a regular file" "$tmp/err" || { echo "FAIL FIFO weights: exit $rc"; cat "$tmp/err"; fails=$((fails + 1)); }
mkfifo "$tmp/fifo.safetensors"
timeout $((5 * time_scale)) "$inspect" --base "$tmp/fifo.safetensors" "$data/tiny_mlp/adapter" >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" -eq 1 ] || { echo "FAIL FIFO --base: exit $rc"; cat "$tmp/err"; fails=$((fails + 1)); }

# PEFT GPT-2 adapters (Conv1D weights [in, out], whatever fan_in_fan_out says) pass with --base.
if [ -n "$fixtures" ]; then
  for case in gpt2_conv1d gpt2_all_linear gpt2_layers; do
    if ! "$inspect" --base "$fixtures/$case/base_model.safetensors" "$fixtures/$case/adapter" >"$tmp/out" 2>"$tmp/err" ||
        ! grep -q "modules fit" "$tmp/out"; then
      echo "FAIL PEFT adapter $case with --base:"; cat "$tmp/err"; fails=$((fails + 1))
    else
      echo "ok   $case with --base: $(grep "modules fit" "$tmp/out")"
    fi
  done
fi

"$inspect" >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL no arguments: exit $rc (want 2)"; fails=$((fails + 1)); }
"$inspect" --bogus "$data/tiny_mlp/adapter" >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL unknown option: exit $rc (want 2)"; fails=$((fails + 1)); }
"$inspect" "$data/does_not_exist" >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] || { echo "FAIL missing dir: exit $rc"; fails=$((fails + 1)); }

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
