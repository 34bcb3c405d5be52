# Shared by the end-to-end scripts (sourced): a scratch directory per case, failure messages,
# the small training text and waiting for files and processes.
#   cli_setup CASE SCRATCH_ROOT     fresh SCRATCH_ROOT/CASE as the working directory
#   write_documents FILE            120 short documents separated by blank lines
#   wait_for PATH PID               until PATH exists (1 if PID ends first or 60 s pass)
#   exits_within SECONDS PID        waits for PID (a child); rc = its exit code; 1 if still running
# PEFT_TEST_TIME_SCALE (default 1; scripts/asan.sh sets 4) stretches every wait for slow builds.
time_scale=${PEFT_TEST_TIME_SCALE:-1}

cli_setup() {
  case_name=$1
  scratch=$2/$1
  rm -rf "$scratch"
  mkdir -p "$scratch"
  cd "$scratch" || exit 1
}

fail() { echo "FAIL ($case_name): $*" >&2; exit 1; }

write_documents() {
  for i in $(seq 1 120); do
    printf 'Document %d: the quick brown fox jumps over the lazy dog %d times.\nIt rests after %d jumps.\n\n' "$i" "$((i % 7))" "$((i % 5))"
  done > "$1"
}

wait_for() {
  for _ in $(seq 1 $((600 * time_scale))); do
    [ -e "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

exits_within() {
  for _ in $(seq 1 $(($1 * 10 * time_scale))); do
    if ! kill -0 "$2" 2>/dev/null; then
      wait "$2"
      rc=$?
      return 0
    fi
    sleep 0.1
  done
  return 1
}
