-- twitter.sql — workload (d), "Hello Twitter": tweets per language per 10 s
-- event-time window over flat JSON tweets (bench/gen_inputs.py twitter).
-- Same query as examples/twitter/hello_twitter.sql, with a SQLite sink.
CREATE SOURCE tweets (
  lang         VARCHAR,
  timestamp_ms TIMESTAMP,
  WATERMARK FOR timestamp_ms AS timestamp_ms - INTERVAL '1' SECOND
) WITH (connector = 'file', path = '${input}/tweets', format = 'jsonl');

CREATE SINK result WITH (connector = 'sqlite', path = '${out}/result.db', table = 'result') AS
SELECT window_start, window_end, lang, COUNT(*) AS tweets
FROM tweets
GROUP BY TUMBLE(timestamp_ms, INTERVAL '10' SECOND), lang;
