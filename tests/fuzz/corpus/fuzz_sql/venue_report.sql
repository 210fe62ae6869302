
SET 'key.file' = 'data/keys.txt';

CREATE SOURCE events (
  ts         TIMESTAMP,
  msisdn     VARCHAR,
  event_type VARCHAR,
  cell_id    BIGINT,
  duration_s BIGINT,
  bytes      BIGINT,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'file', path = 'data/events', format = 'csv');

CREATE TABLE subscribers (
  msisdn     VARCHAR,
  birth_date TIMESTAMP,
  gender     VARCHAR,
  PRIMARY KEY (msisdn)
) WITH (connector = 'file', path = 'data/subscribers.csv');

CREATE TABLE venues (
  name  VARCHAR,
  start TIMESTAMP,
  "end" TIMESTAMP,
  cells VARCHAR,
  area  VARCHAR,
  tz    VARCHAR,
  PRIMARY KEY (name)
) WITH (connector = 'file', path = 'data/venues.csv', format = 'csv',
        market_share = 'data/market_share.csv');

CREATE SINK venue_report WITH (
  connector = 'sqlite', path = 'out/venues.db', table = 'venue_report',
  mode = 'upsert',             -- key: venue, report, slice_start, age_band, gender
  k_anonymity = '16',             -- decided on the raw distinct count
  emit_every_ms = '60000',  -- early firings (event time)
  slice_ms = '900000',     -- arrivals and departures per slice
  blur_ms = '0',            -- time blurring +-B, keyed, before the report
  round_to = '10'                       -- extrapolated counts rounded to a multiple
) AS
SELECT venue, report, slice_start, slice_end, age_band, gender,
       COUNT(DISTINCT PSEUDONYMIZE(e.msisdn)) AS subscribers,
       extrapolated, arrivals, departures, as_of, final
FROM events AS e
JOIN subscribers FOR SYSTEM_TIME AS OF e.ts AS s ON s.msisdn = PSEUDONYMIZE(e.msisdn)
WHERE e.event_type <> 'SMS'
GROUP BY VENUE(e.ts, e.cell_id, venues), AGE_BAND(s.birth_date);
