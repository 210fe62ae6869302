#!/usr/bin/env bash
# Kafka consumption benchmark: events/s one sluice instance reads from a
# real broker (tests/kafka/broker.py: Kafka 4.1.1, KRaft, one node on this
# machine), decodes and aggregates (count per event type and minute, to a
# file). Two inputs: events batched 100 per message, and one per message.
#   bash bench/kafka.sh [EVENTS]      (default 2000000; prints a RESULTS.md entry)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000000}
S=build/sluice
W=$(mktemp -d /tmp/sluice-bench-kafka.XXXXXX)
trap 'python3 tests/kafka/broker.py stop "$W/broker" >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
B=$(python3 tests/kafka/broker.py start "$W/broker" 2>/dev/null)
job() { # topic -> SQL file
    cat > "$W/$1.sql" <<SQL
CREATE SOURCE ev (ts TIMESTAMP, msisdn VARCHAR, event_type VARCHAR, cell_id BIGINT,
  duration_s BIGINT, bytes BIGINT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH (connector = 'kafka', bootstrap.servers = '$B', topic = '$1', bounded = 'true',
      properties.fetch.max.bytes = '52428800', properties.max.partition.fetch.bytes = '8388608');
CREATE SINK o WITH (connector = 'file', path = '$W/$1.csv', format = 'csv') AS
SELECT window_start, event_type, COUNT(*) AS events FROM ev
GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), event_type;
SQL
}
run() { # topic events label
    job "$1"
    local t0 t1
    t0=$(date +%s.%N)
    "$S" run "$W/$1.sql" --set metrics.address= --set parallelism=2 --quiet
    t1=$(date +%s.%N)
    local got
    got=$(awk -F, 'NR > 1 {s += $3} END {print s}' "$W/$1.csv")
    [ "$got" = "$2" ] || { echo "counted $got events, expected $2" >&2; exit 1; }
    python3 -c "import sys; w=$t1-$t0; print(f'- $3: {$2:,} events in {w:.2f} s wall: **{$2/w/1e6:.2f} M events/s**')"
}
"$S" gen --out "$W/data" --events "$N" --subscribers 100000 --parts 2 --kafka "$B" \
    --topic batched --per-message 100 >/dev/null 2>&1
M=$(( N / 4 ))
"$S" gen --out "$W/data1" --events "$M" --subscribers 100000 --parts 2 --kafka "$B" \
    --topic single --per-message 1 >/dev/null 2>&1
echo "## $(date -u +%F) — Kafka source, one instance, commit $(git rev-parse --short HEAD)"
echo
echo "- machine: $(nproc) cores, $(python3 -c 'import platform; print(platform.platform())'); the broker runs on the same machine; machine shared with other builds and tests"
echo "- command: \`bash bench/kafka.sh $N\` (count per event type and minute, parallelism 2, topic with 2 partitions, read_committed)"
run batched "$N" "100 events per message"
run single "$M" "1 event per message"
