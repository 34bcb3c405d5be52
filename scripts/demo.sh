#!/usr/bin/env bash
# The main job: builds peft-finetune and runs it. No arguments = the embedded default run
# (pre-train builtin:tiny-gpt2 on corpus part A, LoRA-instruction-tune it on data/instructions with
# answers and exact match before/after, reload + merge check; about 1.5 minutes on 2 cores). Arguments
# go to peft-finetune, e.g. `--config train.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh --target peft-finetune >&2
exec "${PEFT_BUILD_DIR:-build}/peft-finetune" "$@"
