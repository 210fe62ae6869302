-- yahoo.sql — the Yahoo Streaming Benchmark query: keep the ad events that
-- are views, join each ad to its campaign, count views per campaign per
-- 10-second window. (The benchmark keeps ad->campaign in Redis; here it is a
-- lookup table. Events of unknown ads have no campaign and are dropped by
-- the WHERE, as the benchmark's join drops them.)
--
--   python3 examples/yahoo/gen_events.py /tmp/ysb
--   sluice run examples/yahoo/yahoo.sql --set input=/tmp/ysb

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

CREATE SINK campaign_views WITH (connector = 'stdout', format = 'table') AS
SELECT window_start, window_end, c.campaign_id, COUNT(*) AS views
FROM ad_events AS e
JOIN campaigns FOR SYSTEM_TIME AS OF e.event_time AS c ON c.ad_id = e.ad_id
WHERE e.event_type = 'view' AND c.campaign_id IS NOT NULL
GROUP BY TUMBLE(e.event_time, INTERVAL '10' SECOND), c.campaign_id;
