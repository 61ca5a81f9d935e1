#!/usr/bin/env bash
# Deliberately broken builds (issue #18). Each NAME.patch in this folder breaks one
# property that a test claims; its header says which test must catch it:
#
#   Item: 5                       the numbered item of issue 18 (or "README", …)
#   Breaks: …                     what the patch disables
#   Test: --test bmc_cli NAME     the arguments of `cargo test` that select that test
#   Env: CI=true                  optional: environment of that run
#   Expect: caught | survived     optional (default caught)
#
# Usage (from anywhere in the repository):
#   bash tests/mutants/run.sh            every patch, one after the other
#   bash tests/mutants/run.sh NAME...    only these (NAME or NAME.patch)
#   MUTANTS_BASELINE=1 bash tests/mutants/run.sh NAME   also run the test unpatched first
#
# The tree under test is HEAD plus uncommitted changes to tracked files (`git stash
# create`), checked out in a scratch worktree (target/mutants-src) that is reused, so only
# the files a patch touches change and cargo rebuilds only the crates behind them; all
# builds share one CARGO_TARGET_DIR (target/mutants, seeded once with the dependencies compiled in target/debug). Only
# the named test binary is built and run. A patch is applied, its test built (a build
# failure is reported as such, never as "caught"), run, and the patch reverted.
# Output: one line per patch, `caught` or `SURVIVED` (plus the first failure message);
# full logs in target/mutants-logs/NAME.log. Exit status 0 when every patch ended as its
# Expect line says. Not part of `cargo test`.
set -euo pipefail
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$root"
export CARGO_INCREMENTAL=0
here=$root/tests/mutants
scratch=${MUTANTS_SCRATCH:-$root/target/mutants-src}
export CARGO_TARGET_DIR=${MUTANTS_TARGET_DIR:-$root/target/mutants}
logs=$root/target/mutants-logs
timeout_secs=${MUTANTS_TIMEOUT:-1800}
mkdir -p "$logs"

rev=$(git stash create)
rev=${rev:-$(git rev-parse HEAD)}
if [ ! -e "$scratch/.git" ]; then
  git worktree add --detach -q "$scratch" "$rev"
fi
# Only files that differ are rewritten (new mtime), so cargo's fingerprints stay right.
git -C "$scratch" checkout --detach -f -q "$rev"
git -C "$scratch" clean -fdq
# Seed: the compiled dependencies of target/debug (not its test executables).
if [ ! -d "$CARGO_TARGET_DIR/debug" ] && [ -d "$root/target/debug/deps" ]; then
  mkdir -p "$CARGO_TARGET_DIR/debug/deps"
  cp -a "$root/target/debug/build" "$root/target/debug/.fingerprint" "$CARGO_TARGET_DIR/debug/"
  find "$root/target/debug/deps" -maxdepth 1 \( -name '*.rlib' -o -name '*.rmeta' -o -name '*.so' \) \
    -exec cp -p {} "$CARGO_TARGET_DIR/debug/deps/" \;
fi

field() { sed -n "s/^$1: //p" "$2" | head -1; }

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for p in "$here"/*.patch; do names+=("$(basename "$p")"); done
fi
status=0
for n in "${names[@]}"; do
  n=$(basename "$n" .patch)
  patch=$here/$n.patch
  log=$logs/$n.log
  test_args=$(field Test "$patch")
  env_args=$(field Env "$patch")
  expect=$(field Expect "$patch")
  expect=${expect:-caught}
  if [ -z "$test_args" ]; then
    echo "ERROR    $n: no 'Test:' line"; status=1; continue
  fi
  run() { # run LABEL: cargo test in the scratch tree, into the log
    (cd "$scratch" && env $env_args timeout -k 10 "$timeout_secs" cargo test $test_args) >>"$log" 2>&1
  }
  : >"$log"
  if [ -n "${MUTANTS_BASELINE:-}" ]; then
    echo "== baseline (unpatched): $env_args cargo test $test_args" >>"$log"
    if ! run; then
      echo "BASELINE FAILED $n ($env_args cargo test $test_args fails without the patch; see $log)"
      status=1; continue
    fi
  fi
  if ! git -C "$scratch" apply "$patch"; then
    echo "NOT APPLIED $n"; status=1; continue
  fi
  echo "== patched: $env_args cargo test $test_args" >>"$log"
  if ! (cd "$scratch" && env $env_args cargo test $test_args --no-run) >>"$log" 2>&1; then
    result="BUILD FAILED"
  elif run; then
    result=survived
  elif grep -q "^test result: FAILED\|panicked at\|^error: test failed" "$log"; then
    result=caught
  else
    result="ERROR (no test failure in the log)"
  fi
  git -C "$scratch" apply -R "$patch"
  why=$(grep -m1 -A1 "panicked at" "$log" | tail -1 | cut -c1-200 || true)
  case $result in
    caught) line="caught   $n: $env_args cargo test $test_args failed: $why" ;;
    survived) line="SURVIVED $n: $env_args cargo test $test_args passed" ;;
    *) line="$result $n (see $log)" ;;
  esac
  echo "$line"
  [ "$result" = "$expect" ] || status=1
done
exit $status
