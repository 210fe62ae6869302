#!/usr/bin/env bash
# Installs the Debian packages sluice needs to build, test and run its demo.
# Idempotent: does nothing when everything is present; uses sudo when not root.
set -euo pipefail
pkgs=(gcc make pkg-config libssl-dev libsqlite3-dev sqlite3 zlib1g-dev
      libcmocka-dev python3 python3-pytest libmicrohttpd-dev prometheus chromium
      libpq-dev postgresql)
# tests/package/test_man.py renders the man pages with man-db (groff).
pkgs+=(man-db)
# the RocksDB state backend (docs/state.md)
pkgs+=(librocksdb-dev)
# tests/kafka: librdkafka, kcat, and a real broker resolved by Maven (Java 17).
pkgs+=(librdkafka-dev kcat maven openjdk-17-jre-headless)
# format = 'avro' (libavro, avro-c); tests/kafka checks it against python3-avro.
pkgs+=(libavro-dev python3-avro)
# CI-only stages (fuzzing, static analysis) need clang and the analysers:
# `install-deps.sh --ci`
[ "${1:-}" = "--ci" ] && pkgs+=(clang-14 libclang-rt-14-dev cppcheck clang-tidy)
# The Debian package stage (make package-test) builds the .deb and verifies
# the systemd unit: debhelper, dpkg-dev, fakeroot, systemd (systemd-analyze).
[ "${1:-}" = "--ci" ] && pkgs+=(debhelper dpkg-dev fakeroot systemd)
# The benchmark's Flink peer (make bench) builds with Maven on a JDK:
# `install-deps.sh --bench`
[ "${1:-}" = "--bench" ] && pkgs+=(maven openjdk-17-jdk-headless)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$p")
done
# pytest may come from pip instead of Debian: accept either.
if printf '%s\n' "${missing[@]:-}" | grep -qx python3-pytest \
   && python3 -c 'import pytest' 2>/dev/null; then
    missing=("${missing[@]/python3-pytest}")
fi
missing=(${missing[@]:-})
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
