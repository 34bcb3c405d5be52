#!/usr/bin/env bash
# The main job: builds the example and runs it (arguments go to the program, see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh --target peft_config_demo
exec "${PEFT_BUILD_DIR:-build}/examples/peft_config_demo" "$@"
