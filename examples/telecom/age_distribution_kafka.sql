-- age_distribution_kafka.sql — the telecom reference job on Kafka: events
-- are read from a Kafka topic (CSV, one or more events per message, no
-- header) and the k-anonymised age distribution is written, exactly once,
-- to a Kafka topic as JSON Lines (read it with isolation.level=read_committed).
-- Same statistics as age_distribution.sql (tests/kafka/test_kafka_eos.py
-- checks them against tests/golden/reference.sql).
--
--   sluice gen --out data --kafka 127.0.0.1:9092 --topic events && sluice keygen data/keys.txt
--   sluice run examples/telecom/age_distribution_kafka.sql --set data=data \
--       --set bootstrap=127.0.0.1:9092 --set checkpoint.dir=out/ck
--
-- Distributed: add `--cluster 127.0.0.1:9092` and start the same command on
-- as many machines as you like (docs/distributed.md).
--
-- Paths and servers come from ${variables} with defaults; --set NAME=VALUE
-- changes them. `bounded` = true reads up to the end offsets found at start
-- and then ends (tests, backfills); false runs until stopped.

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
) WITH (connector = 'kafka', bootstrap.servers = '${bootstrap:-127.0.0.1:9092}',
        topic = '${in_topic:-events}', format = '${format:-csv}', bounded = '${bounded:-false}');

CREATE TABLE subscribers (
  msisdn     VARCHAR,
  birth_date TIMESTAMP,
  gender     VARCHAR,
  PRIMARY KEY (msisdn)
) WITH (connector = 'file', path = '${data:-data}/subscribers.csv');

CREATE TABLE cells (
  cell_id BIGINT,
  area    VARCHAR,
  PRIMARY KEY (cell_id)
) WITH (connector = 'file', path = '${data:-data}/cells.csv');

CREATE SINK age_distribution WITH (
  connector = 'kafka', bootstrap.servers = '${bootstrap:-127.0.0.1:9092}',
  topic = '${out_topic:-age_distribution}', format = 'jsonl',
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
