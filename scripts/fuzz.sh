#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (-fsanitize=fuzzer,address,undefined) into
# build-fuzz/ and runs each for $FUZZ_SECONDS (default 60) seconds, seeded from tests/data and
# the Python-written golden files (tests/fixtures), fuzz/corpus/<target>/ (kept inputs and
# regression cases) and fuzz/seeds/ (YAML alias bombs, cycles, crash regressions). They need no
# LibTorch: they cover the safetensors header layer, the adapter_config.json reader, the YAML
# reader and the training-checkpoint readers.
#   scripts/fuzz.sh                      # build + 60 s per target
#   FUZZ_SECONDS=300 scripts/fuzz.sh     # longer run
#   FUZZ_TARGETS="fuzz_config_yaml" scripts/fuzz.sh
# Crashes are written to build-fuzz/artifacts/<target>-crash-*; the script exits non-zero then.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build-fuzz
seconds="${FUZZ_SECONDS:-60}"
cxx="${CXX_FUZZ:-$(command -v clang++-14 || command -v clang++)}"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-sanitize=vptr"
mkdir -p "$out/artifacts"
targets="${FUZZ_TARGETS:-fuzz_safetensors_header fuzz_config_json fuzz_config_yaml fuzz_checkpoint_state}"
# The fuzz targets link peft::format and the YAML readers (fuzz/CMakeLists.txt): the same source
# lists as the library, compiled with the sanitizers; nothing that needs LibTorch is built.
cmake -S . -B "$out" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_CXX_FLAGS="-g -O1 -fno-omit-frame-pointer $san -fsanitize=fuzzer-no-link" \
  -DCMAKE_EXE_LINKER_FLAGS="$san" -DPEFT_BUILD_FUZZERS=ON -DPEFT_BUILD_TESTS=OFF \
  -DPEFT_BUILD_EXAMPLES=OFF -DPEFT_BUILD_TOOLS=OFF -DPEFT_INSTALL=OFF >/dev/null
# shellcheck disable=SC2086
cmake --build "$out" -j"$(nproc)" --target $targets
for t in $targets; do cp "$out/fuzz/$t" "$out/$t"; done

# Seeds (copied, so the fuzzer's own corpus directory is the only thing it writes to).
fixtures="${PEFT_FIXTURES:-tests/fixtures}"
mapfile -t st < <(find tests/data "$fixtures" -name '*.safetensors' -size -64k 2>/dev/null | head -200)
mapfile -t js < <(find tests/data "$fixtures" -name 'adapter_config.json' 2>/dev/null | head -200)
mapfile -t ym < <(find tests/data fuzz/seeds/config_yaml -name '*.yaml' 2>/dev/null)
mkdir -p "$out/corpus/fuzz_safetensors_header" "$out/corpus/fuzz_config_json" "$out/corpus/fuzz_config_yaml" \
  "$out/corpus/fuzz_checkpoint_state"
for f in "${st[@]}"; do cp "$f" "$out/corpus/fuzz_safetensors_header/seed_$(echo "$f" | md5sum | cut -c1-12)"; done
for f in "${js[@]}"; do cp "$f" "$out/corpus/fuzz_config_json/seed_$(echo "$f" | md5sum | cut -c1-12)"; done
for f in "${ym[@]}"; do cp "$f" "$out/corpus/fuzz_config_yaml/seed_$(echo "$f" | md5sum | cut -c1-12)"; done
for d in fuzz/corpus/*/; do mkdir -p "$out/corpus/$(basename "$d")" && cp "$d"* "$out/corpus/$(basename "$d")/"; done

status=0
for t in $targets; do
  dict=fuzz/config.dict
  [ "$t" = fuzz_safetensors_header ] && dict=fuzz/safetensors.dict
  [ "$t" = fuzz_checkpoint_state ] && dict=fuzz/checkpoint.dict
  echo "== run $t for ${seconds}s"
  if ! "$out/$t" "$out/corpus/$t" -dict="$dict" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" \
      2>"$out/$t.log"; then
    echo "!! $t found a problem:"; tail -40 "$out/$t.log"; status=1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/$t.log" | sed "s/^/   /" || true
  echo "   corpus: $(ls "$out/corpus/$t" | wc -l) inputs"
done
exit $status
