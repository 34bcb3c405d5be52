#!/usr/bin/env bash
# ctest: peft-inspect over tests/data. Every bad adapter directory must exit 1 with exactly one
# line on stderr, nothing on stdout, within a second; the good adapters must exit 0; bad usage 2.
#   tests/inspect_bad_inputs.sh PATH/TO/peft-inspect tests/data
set -u
inspect="$1"
data="$2"
fails=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ms() { echo $(( $(date +%s%N) / 1000000 )); }

for dir in "$data"/bad/*/; do
  name=$(basename "$dir")
  [ "$name" = yaml ] && continue
  t0=$(ms)
  timeout 5 "$inspect" "$dir" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  t=$(( $(ms) - t0 ))
  lines=$(wc -l <"$tmp/err")
  if [ "$rc" -ne 1 ] || [ "$lines" -ne 1 ] || [ -s "$tmp/out" ] || [ "$t" -ge 1000 ]; then
    echo "FAIL $name: exit $rc (want 1), $lines stderr lines (want 1), stdout $(wc -c <"$tmp/out") bytes, ${t} ms"
    head -c 600 "$tmp/err"; echo
    fails=$((fails + 1))
  else
    echo "ok   $name (${t} ms): $(cat "$tmp/err")"
  fi
done

for dir in "$data"/tiny_mlp/adapter "$data"/tiny_mlp/dora_adapter; do
  if ! "$inspect" "$dir" >"$tmp/out" 2>"$tmp/err" || [ -s "$tmp/err" ]; then
    echo "FAIL good adapter $dir:"; cat "$tmp/err"; fails=$((fails + 1))
  elif ! grep -q "all 2 modules fit" "$tmp/out"; then
    echo "FAIL good adapter $dir: base model not checked"; cat "$tmp/out"; fails=$((fails + 1))
  fi
done

"$inspect" >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL no arguments: exit $rc (want 2)"; fails=$((fails + 1)); }
"$inspect" --bogus "$data/tiny_mlp/adapter" >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL unknown option: exit $rc (want 2)"; fails=$((fails + 1)); }
"$inspect" "$data/does_not_exist" >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] || { echo "FAIL missing dir: exit $rc"; fails=$((fails + 1)); }

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
