#!/usr/bin/env bash
# The reference job from scratch: generate a day's slice of synthetic
# mobile-phone events, create a pseudonymisation key, run telecom-age into
# out/demo.db and show a sample of the published age distribution.
set -euo pipefail
cd "$(dirname "$0")/../.."
S=build/sluice
DATA=out/demo-data
rm -rf "$DATA" out/demo.db out/demo.db-wal out/demo.db-shm out/dead-letters.jsonl
mkdir -p out
echo "== generating 2,000,000 events (200,000 subscribers, 2,000 cells in 40 areas, 2 hours)"
"$S" gen --out "$DATA" --events 2000000 --subscribers 200000 --cells 2000 --areas 40 \
    --parts 2 --seed 42 --set span.ms=7200000
"$S" keygen "$DATA/keys.txt"
echo "== running telecom-age (pseudonymise -> join -> age band -> 1-min windows -> k=16 -> SQLite)"
"$S" run telecom-age --events "$DATA/events" --subscribers "$DATA/subscribers.csv" \
    --cells "$DATA/cells.csv" --key-file "$DATA/keys.txt" --db out/demo.db --out-dir out
echo "== sample of out/demo.db, table age_distribution"
sqlite3 -header -column out/demo.db <<'SQL'
SELECT strftime('%Y-%m-%d %H:%M', window_start / 1000, 'unixepoch') AS minute,
       event_type, area, age_band, events, subscribers
FROM age_distribution
WHERE window_start = (SELECT MIN(window_start) + 3600000 FROM age_distribution)
  AND area = (SELECT area FROM age_distribution GROUP BY area ORDER BY SUM(events) DESC LIMIT 1)
ORDER BY event_type, age_band
LIMIT 25;
SELECT COUNT(*) AS published_groups, SUM(events) AS events_in_published_groups
FROM age_distribution;
SQL
