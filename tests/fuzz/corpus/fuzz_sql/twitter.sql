-- hello_twitter.sql — "Hello Twitter", the first job of stream processors:
-- tweets per language per 10-second window, from JSON Lines carrying
-- Twitter's `lang` and `timestamp_ms` fields (other fields are ignored).
--
--   python3 examples/twitter/gen_tweets.py /tmp/tweets.jsonl
--   sluice run examples/twitter/hello_twitter.sql --set input=/tmp/tweets.jsonl

CREATE SOURCE tweets (
  lang         VARCHAR,
  timestamp_ms TIMESTAMP,          -- Twitter writes it as a string of epoch ms
  WATERMARK FOR timestamp_ms AS timestamp_ms - INTERVAL '1' SECOND
) WITH (connector = 'file', path = '${input:-tests/golden/twitter/input/tweets.jsonl}',
        format = 'jsonl');

CREATE SINK tweets_per_language WITH (connector = 'stdout', format = 'table') AS
SELECT window_start, window_end, lang, COUNT(*) AS tweets
FROM tweets
GROUP BY TUMBLE(timestamp_ms, INTERVAL '10' SECOND), lang;
