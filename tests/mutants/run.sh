#!/usr/bin/env bash
# Deliberately broken builds (issue #18): applies each patch in this folder to the work
# tree, runs the test that must catch it, and reverts. A mutant that the test does not
# catch is reported as SURVIVED. Not part of `cargo test` (each mutant rebuilds the crate).
# Usage: bash tests/mutants/run.sh [PATCH...]   (from the repository root, clean tree)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_INCREMENTAL=0
declare -A TEST=(
  [audit-failure-unrecorded.patch]="--test audit_coverage"
  [documented-field-renamed.patch]="--test doc_examples readme_examples_run_as_documented"
  [kills-before-any-write.patch]="--test reliability_kill"
)
patches=("$@")
[ ${#patches[@]} -eq 0 ] && patches=("${!TEST[@]}")
status=0
for p in "${patches[@]}"; do
  p=$(basename "$p")
  git apply "tests/mutants/$p"
  if cargo test ${TEST[$p]} >/dev/null 2>&1; then
    echo "SURVIVED $p (cargo test ${TEST[$p]} passed)"; status=1
  else
    echo "caught   $p (cargo test ${TEST[$p]} failed)"
  fi
  git apply -R "tests/mutants/$p"
done
exit $status
