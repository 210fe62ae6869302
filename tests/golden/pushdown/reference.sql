-- Views and their n per campaign and channel per 10 s, computed by SQLite
-- over the raw input: events(line) holds the JSON Lines. A record with a
-- non-integer n or m, or a kind outside the domain, is a dead letter.
CREATE TABLE expected AS
SELECT (CAST(json_extract(e.line, '$.t') AS INTEGER) / 10000) * 10000 AS window_start,
       (CAST(json_extract(e.line, '$.t') AS INTEGER) / 10000) * 10000 + 10000 AS window_end,
       c.campaign_id, json_extract(e.line, '$.channel') AS channel,
       COUNT(*) AS views, SUM(json_extract(e.line, '$.n')) AS total
FROM events e JOIN campaigns c ON c.ad_id = json_extract(e.line, '$.ad_id')
WHERE json_extract(e.line, '$.kind') = 'view'
  AND json_extract(e.line, '$.channel') NOT IN ('spam', 'test')
  AND json_type(e.line, '$.n') = 'integer'
  AND json_type(e.line, '$.m') = 'integer'
GROUP BY 1, 2, 3, 4;
