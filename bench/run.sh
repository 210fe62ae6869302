#!/usr/bin/env bash
# Benchmark entry point: `make bench` (full) or `make bench-quick`.
exec python3 "$(dirname "$0")/harness.py" "$@"
