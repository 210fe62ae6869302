#!/usr/bin/env bash
# Kafka benchmarks against a real broker (tests/kafka/broker.py: Kafka 4.1.1,
# KRaft, one node on this machine):
# 1. events/s one sluice instance consumes running the reference job
#    (examples/telecom/age_distribution_kafka.sql: pseudonymise, join
#    subscribers and cells, 1-minute windows, exact distinct counts,
#    k-anonymity, exactly-once Kafka sink), events batched 100 per message
#    and 1 per message; also a light job (count per event type and minute)
#    to show what the source alone sustains;
# 2. end-to-end latency p50/p99 at a fixed input rate (bench/kafka_latency.py).
#   bash bench/kafka.sh [EVENTS] [RATE]   (defaults 2000000, 100000; prints a
#                                          RESULTS.md entry)
# Needs Java 17 and Maven (the broker's jars); without them it says so and
# exits 0, so `make bench` works on machines without Kafka.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000000}
RATE=${2:-100000}
S=${SLUICE_BIN:-build/sluice}
if ! command -v java >/dev/null || ! command -v mvn >/dev/null || ! command -v kcat >/dev/null; then
    echo "bench/kafka.sh: skipped: needs java, mvn and kcat (scripts/install-deps.sh)" >&2
    exit 0
fi
W=$(mktemp -d /tmp/sluice-bench-kafka.XXXXXX)
trap 'python3 tests/kafka/broker.py stop "$W/broker" >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
B=$(python3 tests/kafka/broker.py start "$W/broker" 2>/dev/null)
count_job() { # topic -> SQL file
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
rate() { # events seconds-expression -> "X.XX" (millions per second)
    python3 -c "print(f'{($1) / ($2) / 1e6:.2f}')"
}
run_count() { # topic events label
    count_job "$1"
    local t0 t1 got
    t0=$(date +%s.%N)
    "$S" run "$W/$1.sql" --set metrics.address= --set parallelism=2 --quiet
    t1=$(date +%s.%N)
    got=$(awk -F, 'NR > 1 {s += $3} END {print s}' "$W/$1.csv")
    [ "$got" = "$2" ] || { echo "counted $got events, expected $2" >&2; exit 1; }
    echo "- count per event type and minute, $3: $2 events in $(python3 -c "print(f'{$t1 - $t0:.2f}')") s wall: **$(rate "$2" "$t1 - $t0") M events/s**"
}
run_reference() { # topic data events per-message
    local t0 t1 log="$W/ref-$1.log" msgs
    t0=$(date +%s.%N)
    "$S" run examples/telecom/age_distribution_kafka.sql --set data="$2" --set bootstrap="$B" \
        --set in_topic="$1" --set out_topic="out-$1" --set bounded=true \
        --set checkpoint.dir="$W/ck-$1" --set output.dir="$W/out-$1" \
        --set metrics.address= --set parallelism=2 2> "$log"
    t1=$(date +%s.%N)
    msgs=$(( $3 / $4 ))
    # the job's own summary: records and seconds of sl_job_run (the lookup
    # tables are loaded before it starts)
    local recs secs
    recs=$(sed -n -E 's/.*: done: ([0-9]+) records in ([0-9.]+) s.*/\1/p' "$log")
    secs=$(sed -n -E 's/.*: done: ([0-9]+) records in ([0-9.]+) s.*/\2/p' "$log")
    [ "$recs" = "$3" ] || { echo "the job read $recs records, expected $3" >&2; cat "$log" >&2; exit 1; }
    echo "- reference job, $4 event(s) per message: $3 events ($msgs messages): **$(rate "$3" "$secs") M events/s** ($(python3 -c "print(f'{($msgs) / ($secs) / 1e3:.1f}')") k messages/s) over the job's run of $secs s (lookup tables loaded before); $(python3 -c "print(f'{$t1 - $t0:.2f}')") s wall for the whole command"

}
"$S" gen --out "$W/data" --events "$N" --subscribers 100000 --parts 2 --kafka "$B" \
    --topic batched --per-message 100 >/dev/null 2>&1
"$S" keygen "$W/data/keys.txt" >/dev/null
M=$(( N / 4 ))
"$S" gen --out "$W/data1" --events "$M" --subscribers 100000 --parts 2 --kafka "$B" \
    --topic single --per-message 1 >/dev/null 2>&1
"$S" keygen "$W/data1/keys.txt" >/dev/null
echo "## $(date -u +%F) — Kafka: throughput and end-to-end latency, one instance, commit $(git rev-parse --short HEAD)"
echo
echo "- machine: $(nproc) cores, $(python3 -c 'import platform; print(platform.platform())'); the broker runs on the same machine; load average $(cut -d' ' -f1-3 /proc/loadavg) at the start (shared with other builds and tests)"
echo "- command: \`bash bench/kafka.sh $N $RATE\` (topics with 2 partitions, read_committed, parallelism 2)"
run_reference batched "$W/data" "$N" 100
run_reference single "$W/data1" "$M" 1
run_count batched "$N" "100 events per message"
run_count single "$M" "1 event per message"
python3 bench/kafka_latency.py "$B" "$W/data" "$W" "$RATE" 20 1000
echo "- load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
