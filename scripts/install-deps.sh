#!/usr/bin/env bash
# Installs the Debian packages peft-cpp needs, only those that are missing (bookworm, as root or
# with sudo). Sourced or run by scripts/demo.sh and scripts/test.sh.
set -euo pipefail

PEFT_PACKAGES=(g++ cmake make libtorch-dev libopenblas0-pthread nlohmann-json3-dev libyaml-cpp-dev
               libgtest-dev ccache pkg-config libpcre2-dev libutf8proc-dev libgloo-dev
               zlib1g-dev)
missing=()
for p in "${PEFT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "peft-cpp: installing missing packages: ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
