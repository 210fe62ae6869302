-- age_distribution_pg.sql — the telecom reference job in SQL on PostgreSQL:
-- subscribers are read from the PostgreSQL table `subscribers` (msisdn text,
-- birth_date date, gender text, updated_at timestamptz) and re-read every
-- ${refresh_ms:-0} ms for changed rows, and the statistics are written to the
-- PostgreSQL table age_distribution, exactly once (docs/postgres.md).
--
--   sluice gen --out data && sluice keygen data/keys.txt
--   psql -c "CREATE TABLE subscribers (msisdn text PRIMARY KEY, birth_date date,
--            gender text, updated_at timestamptz NOT NULL DEFAULT now())"
--   psql -c "\copy subscribers (msisdn, birth_date, gender) FROM data/subscribers.csv CSV HEADER"
--   sluice run examples/telecom/age_distribution_pg.sql --set data=data --set pg='host=... dbname=...'
--
-- An empty pg (the default) means the PG* environment variables (PGHOST,
-- PGDATABASE, PGUSER, PGPASSWORD, ...).

SET 'key.file' = '${data:-data}/keys.txt';   -- one keyring for PSEUDONYMIZE and the subscriber table

CREATE SOURCE events (
  ts         TIMESTAMP,
  msisdn     VARCHAR,
  event_type VARCHAR CHECK (event_type IN ('SMS_SENT', 'SMS_RECEIVED', 'CALL_PLACED',
                                           'CALL_RECEIVED', 'DATA_SESSION')),
  cell_id    BIGINT,
  duration_s BIGINT,
  bytes      BIGINT,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'file', path = '${data:-data}/events', format = '${format:-csv}');

CREATE TABLE subscribers (
  msisdn     VARCHAR,
  birth_date TIMESTAMP,
  gender     VARCHAR,
  PRIMARY KEY (msisdn)
) WITH (connector = 'postgres', dsn = '${pg:-}', table = 'subscribers',
        refresh.interval.ms = '${refresh_ms:-0}');

CREATE TABLE cells (
  cell_id BIGINT,
  area    VARCHAR,
  PRIMARY KEY (cell_id)
) WITH (connector = 'file', path = '${data:-data}/cells.csv');

CREATE SINK age_distribution WITH (
  connector = 'postgres', dsn = '${pg:-}', table = 'age_distribution',
  mode = 'upsert',                      -- key: window_start and the GROUP BY keys
  k_anonymity = '${k:-16}', k_column = 'subscribers'
) AS
SELECT window_start, window_end, e.event_type,
       COALESCE(c.area, 'unknown') AS area,
       CASE
         WHEN s.birth_date IS NULL THEN 'unknown'
         WHEN AGE_YEARS(s.birth_date, window_start) < 0 THEN 'unknown'
         WHEN AGE_YEARS(s.birth_date, window_start) <= 17 THEN '0-17'
         WHEN AGE_YEARS(s.birth_date, window_start) <= 24 THEN '18-24'
         WHEN AGE_YEARS(s.birth_date, window_start) <= 34 THEN '25-34'
         WHEN AGE_YEARS(s.birth_date, window_start) <= 44 THEN '35-44'
         WHEN AGE_YEARS(s.birth_date, window_start) <= 54 THEN '45-54'
         WHEN AGE_YEARS(s.birth_date, window_start) <= 64 THEN '55-64'
         ELSE '65+'
       END AS age_band,
       COUNT(*) AS events,
       COUNT(DISTINCT PSEUDONYMIZE(e.msisdn)) AS subscribers
FROM events AS e
JOIN subscribers FOR SYSTEM_TIME AS OF e.ts AS s ON s.msisdn = PSEUDONYMIZE(e.msisdn)
JOIN cells FOR SYSTEM_TIME AS OF e.ts AS c ON c.cell_id = e.cell_id
GROUP BY TUMBLE(e.ts, INTERVAL '1' MINUTE), e.event_type, COALESCE(c.area, 'unknown'), age_band;
