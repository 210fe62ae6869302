-- Views per campaign per 10 s, computed by SQLite over the raw input: table
-- events(line) holds the JSON Lines, campaigns(ad_id, campaign_id) the CSV.
CREATE TABLE expected AS
SELECT (CAST(json_extract(e.line, '$.event_time') AS INTEGER) / 10000) * 10000 AS window_start,
       (CAST(json_extract(e.line, '$.event_time') AS INTEGER) / 10000) * 10000 + 10000 AS window_end,
       c.campaign_id, COUNT(*) AS views
FROM events e JOIN campaigns c ON c.ad_id = json_extract(e.line, '$.ad_id')
WHERE json_extract(e.line, '$.event_type') = 'view'
GROUP BY 1, 2, 3;
