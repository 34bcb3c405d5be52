#!/usr/bin/env bash
# The default-run style fine-tune (examples/train/qlora.yaml) on a 4-bit NF4 base and on a bf16
# base (same pre-trained base, seed and data), then the two held-out losses side by side.
#   bash bench/qlora_quality.sh [build/peft-finetune] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
tool=${1:-build/peft-finetune}
steps=${2:-1500}
out=$(mktemp -d)
cfg=examples/train/qlora.yaml
# The bf16 run: no quantization section, base weights in bf16 (adapters stay fp32).
sed -e '/^quantization:/,/^lora:/{/^lora:/!d}' -e 's/^  dtype: float32/  dtype: bfloat16/' "$cfg" > examples/train/.qlora_bf16.yaml
trap 'rm -f examples/train/.qlora_bf16.yaml' EXIT
"$tool" --config "$cfg" --steps "$steps" --output-dir "$out/nf4" > "$out/nf4.txt" 2>&1
"$tool" --config examples/train/.qlora_bf16.yaml --steps "$steps" --output-dir "$out/bf16" > "$out/bf16.txt" 2>&1
loss() { grep -o 'before [0-9.]* -> after [0-9.]*' "$1" | head -1 | awk '{print $5}'; }
nf4=$(loss "$out/nf4.txt")
bf16=$(loss "$out/bf16.txt")
grep -h '^quantization:' "$out/nf4.txt"
echo "held-out loss after $steps steps: nf4 base $nf4, bf16 base $bf16, relative difference $(awk -v a="$nf4" -v b="$bf16" 'BEGIN{printf "%.4f", (a-b)/b}')"
echo "logs: $out/nf4.txt $out/bf16.txt"
