#!/usr/bin/env bash
# Refreshes the repo's copy of the golden files (tests/fixtures/<set>/) from the shared fixtures
# written by Python PEFT / transformers (default ../shared/fixtures, or $1). Only the sets the
# tests read are copied (tests/fixtures/SETS, one name per line); the copy replaces the old one.
#   scripts/refresh_fixtures.sh                 # from ../shared/fixtures
#   scripts/refresh_fixtures.sh /path/fixtures  # from elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."
src="${1:-../shared/fixtures}"
[ -d "$src" ] || { echo "refresh_fixtures: no fixtures directory at $src" >&2; exit 1; }
while read -r set; do
  case "$set" in ''|'#'*) continue ;; esac
  [ -d "$src/$set" ] || { echo "refresh_fixtures: $src has no set \`$set\`" >&2; exit 1; }
  rm -rf "tests/fixtures/$set.new"
  cp -r "$src/$set" "tests/fixtures/$set.new"
  find "tests/fixtures/$set.new" -name '__pycache__' -prune -exec rm -rf {} +
  rm -rf "tests/fixtures/$set"
  mv "tests/fixtures/$set.new" "tests/fixtures/$set"
  echo "refresh_fixtures: $set: $(find "tests/fixtures/$set" -type f | wc -l) files, $(du -sh "tests/fixtures/$set" | cut -f1)"
done < tests/fixtures/SETS
