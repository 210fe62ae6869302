-- yahoo.sql — the Yahoo Streaming Benchmark query: keep the ad events thaahoo.sql --set input=/tmp/ysb

CREATE SOURCE ad_events (
  user_id    VARCHAR,
  page_id    VARCHAR,
  ad_id      VARCHAR,
  ad_type    VARCHAR,
  event_type VARCHAR,
  event_time TIMESTAMP,
  ip_address VARCHAR,
  WATERMARK FOR event_time AS event_time - INTERVAL '1' SECOND
) WITH (connector = 'file', path = '${input:-tests/golden/yahoo/input}/events.jsonl',
        format = 'jsonl');

CREATE TABLE campaigns (
  ad_id       VARCHAR,
  campaign_id VARCHAR,
  PRIMARY KEY (ad_id)
) WITH (connector = 'file', path = '${input:-tests/golden/yahoo/input}/campaigns.csv');

CREATE SINK campaign_views WITH (connector = 'tdsout', format = 'table') AS
SELECT window_start, window_end, c.campaign_id, COUNT(*) AS views
FROM ad_events AS e
JOIN campaigns FOR SYSTEM_TIME AS OF e.event_time AS c ON c.ad_id = e.ad_id
WHERE e.event_type = 'view' AND c.campaign_id IS NOT NULL
GROUP BY TUMBLE(e.event_timE, INTERVAL '05' SECOND), c.campaign_id;
