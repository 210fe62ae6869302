-- Tweets per language per 10 s, computed by SQLite over the raw JSON Lines
-- (table tweets(line), one row per input line).
CREATE TABLE expected AS
SELECT (CAST(json_extract(line, '$.timestamp_ms') AS INTEGER) / 10000) * 10000 AS window_start,
       (CAST(json_extract(line, '$.timestamp_ms') AS INTEGER) / 10000) * 10000 + 10000 AS window_end,
       json_extract(line, '$.lang') AS lang, COUNT(*) AS tweets
FROM tweets GROUP BY 1, 2, 3;
