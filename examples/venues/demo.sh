#!/usr/bin/env bash
# demo.sh — a staged concert in the synthetic data and its live venue
# report (docs/venues.md): generate, run, print the age distribution,
# then run the same report written in SQL and compare.
# Run from the repository root after `make`.
set -euo pipefail
dir=${1:-out/venue-demo}
mkdir -p "$dir"
build/sluice gen --out "$dir/data" --events 1000000 --subscribers 100000 \
    --set crowd.size=4000 --set crowd.cells=17-20 \
    --set crowd.start=2026-01-05T19:00:00Z
[ -f "$dir/data/keys.txt" ] || build/sluice keygen "$dir/data/keys.txt"
build/sluice run venue-report --set events="$dir/data/events" \
    --set subscribers="$dir/data/subscribers.csv" --set key.file="$dir/data/keys.txt" \
    --set venues="$dir/data/venues.csv" --set market.share="$dir/data/market_share.csv" \
    --set db="$dir/venues.db" --set output.dir="$dir"
sqlite3 -header -column "$dir/venues.db" \
  "SELECT venue, age_band, subscribers, extrapolated, final FROM venue_report
   WHERE report = 'cumulative' ORDER BY venue, age_band"
# the same report written in SQL (examples/venues/venue_report.sql): same rows
build/sluice run examples/venues/venue_report.sql --quiet --set data="$dir/data" \
    --set venues="$dir/data/venues.csv" --set market_share="$dir/data/market_share.csv" \
    --set db="$dir/venues_sql.db" --set output.dir="$dir/sql"
sqlite3 "$dir/venues.db" "ATTACH '$dir/venues_sql.db' AS q;
  SELECT 'SQL job: ' || (SELECT COUNT(*) FROM q.venue_report) || ' rows, ' ||
         (SELECT COUNT(*) FROM (SELECT * FROM main.venue_report EXCEPT SELECT * FROM q.venue_report)
          ) || ' differ from the CLI job''s'"
