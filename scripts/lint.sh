#!/usr/bin/env bash
# Static analysis (`make lint`, a CI stage): cppcheck and clang-tidy on src/.
# The checks kept, and the findings accepted with their reasons, are in
# .clang-tidy and .cppcheck-suppressions. clang-tidy findings not yet
# triaged are listed in .clang-tidy-baseline (file, check and message, no
# line numbers, so edits elsewhere in a file do not disturb them); a
# finding that is in neither fails the stage, and so does a baseline entry
# that no longer occurs (remove it: the baseline only shrinks).
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
defs=(-D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE)
mapfile -t files < <(ls src/*/*.c)
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -n "${LINT_KEEP:-}" ] && trap - EXIT && echo "lint: output in $tmp"

echo "== cppcheck ($(cppcheck --version))"
cppcheck --quiet --std=c11 --enable=warning,performance,portability \
    --inline-suppr --suppressions-list=.cppcheck-suppressions \
    --error-exitcode=1 -j "$jobs" -Iinclude -Isrc "${defs[@]}" \
    --template='{file}:{line}: {severity} [{id}] {message}' "${files[@]}" || fail=1

echo "== clang-tidy ($(clang-tidy --version | grep -o 'version [0-9.]*'))"
# shellcheck disable=SC2046
flags=(-std=c11 "${defs[@]}" -Iinclude -Isrc
       $(pkg-config --cflags openssl sqlite3 zlib libmicrohttpd)
       $(pkg-config --cflags-only-I libpq | sed 's/-I/-isystem /g'))
printf '%s\n' "${files[@]}" |
    xargs -P "$jobs" -I{} clang-tidy --quiet {} -- "${flags[@]}" \
        > "$tmp/tidy.out" 2>"$tmp/tidy.err"
# one line per finding: "path: [check] message"
sed -n -E "s#^$PWD/##; s#^([^ :]+):[0-9]+:[0-9]+: (warning|error): (.*) \[([A-Za-z0-9.,-]+)\]\$#\1: [\4] \3#p" \
    "$tmp/tidy.out" | sed -E 's/,-warnings-as-errors\]/]/' | sort -u > "$tmp/found"
grep -v -E '^(#|$)' .clang-tidy-baseline | sort -u > "$tmp/base"
if comm -23 "$tmp/found" "$tmp/base" | grep -q .; then
    echo "clang-tidy: new findings (fix them, or justify in .clang-tidy):"
    comm -23 "$tmp/found" "$tmp/base" | while IFS= read -r f; do
        grep -F -- "$(cut -d']' -f2- <<<"$f" | sed 's/^ //')" "$tmp/tidy.out" | head -1
    done
    fail=1
fi
if comm -13 "$tmp/found" "$tmp/base" | grep -q .; then
    echo "clang-tidy: fixed, remove from .clang-tidy-baseline:"
    comm -13 "$tmp/found" "$tmp/base"
    fail=1
fi
if grep -q -E 'error: .*\[clang-diagnostic' "$tmp/tidy.out"; then
    grep -E 'error: .*\[clang-diagnostic' "$tmp/tidy.out"; fail=1
fi
echo "clang-tidy: $(wc -l < "$tmp/found") findings, all in the baseline"
[ $fail -eq 0 ] && echo "lint: clean"
exit $fail
