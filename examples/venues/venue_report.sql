-- venue_report.sql — the venue report in SQL: the age distribution of the
-- people at public events (distinct pseudonymised subscribers in a venue's
-- cells during the event), early every minute, finally at the end, and per
-- 15-minute slice; k-anonymous, extrapolated by market share, upserted
-- into SQLite. Same rows as `sluice run venue-report`
-- (tests/golden/test_venue_sql_golden.py checks it); docs/venues.md.
--
--   sluice gen --out data --set crowd.size=4000 && sluice keygen data/keys.txt
--   sluice run examples/venues/venue_report.sql --set data=data --set db=out/venues.db
--
-- Paths and knobs come from ${variables} with defaults; --set NAME=VALUE
-- changes them (market_share= with an empty value: no extrapolation).

SET 'key.file' = '${data:-data}/keys.txt';

CREATE SOURCE events (
  ts         TIMESTAMP,
  msisdn     VARCHAR,
  event_type VARCHAR,
  cell_id    BIGINT,
  duration_s BIGINT,
  bytes      BIGINT,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'file', path = '${data:-data}/events', format = 'csv');

CREATE TABLE subscribers (
  msisdn     VARCHAR,
  birth_date TIMESTAMP,
  gender     VARCHAR,
  PRIMARY KEY (msisdn)
) WITH (connector = 'file', path = '${data:-data}/subscribers.csv');

-- the venue file (name,start,end,cells,area,tz), read by the venue loader;
-- the market-share table (area,share) scales counts to the population
CREATE TABLE venues (
  name  VARCHAR,
  start TIMESTAMP,
  "end" TIMESTAMP,
  cells VARCHAR,
  area  VARCHAR,
  tz    VARCHAR,
  PRIMARY KEY (name)
) WITH (connector = 'file', path = '${venues:-data/venues.csv}', format = 'csv',
        market_share = '${market_share:-data/market_share.csv}');

CREATE SINK venue_report WITH (
  connector = 'sqlite', path = '${db:-out/venues.db}', table = 'venue_report',
  mode = '${mode:-upsert}',             -- key: venue, report, slice_start, age_band, gender
  k_anonymity = '${k:-16}',             -- decided on the raw distinct count
  emit_every_ms = '${emit_every_ms:-60000}',  -- early firings (event time)
  slice_ms = '${slice_ms:-900000}',     -- arrivals and departures per slice
  blur_ms = '${blur_ms:-0}',            -- time blurring +-B, keyed, before the report
  round_to = '10'                       -- extrapolated counts rounded to a multiple
) AS
SELECT venue, report, slice_start, slice_end, age_band, gender,
       COUNT(DISTINCT PSEUDONYMIZE(e.msisdn)) AS subscribers,
       extrapolated, arrivals, departures, as_of, final
FROM events AS e
JOIN subscribers FOR SYSTEM_TIME AS OF e.ts AS s ON s.msisdn = PSEUDONYMIZE(e.msisdn)
GROUP BY VENUE(e.ts, e.cell_id, venues), AGE_BAND(s.birth_date);
