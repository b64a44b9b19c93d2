#!/usr/bin/env bash
# Regenerates the generated test files into a temporary directory with their
# generators' defaults (the checked-in runs) and fails if any differs from the
# checked-in file: a generator changed without its output, or an output edited by hand.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 tests/support/gen_random_programs.py --out "$tmp/random_programs.rs"
python3 tests/support/gen_buffer_programs.py > "$tmp/buffer_programs.rs"
stale=0
for f in random_programs.rs buffer_programs.rs; do
    rustfmt --edition 2024 "$tmp/$f"
    if ! diff -q "$tmp/$f" "tests/$f" > /dev/null; then
        echo "tests/$f is stale: regenerate it (the command is on its first line)" >&2
        diff -u "tests/$f" "$tmp/$f" | head -20 >&2
        stale=1
    fi
done
exit $stale
