-- ysb_json.sql — workload (c), the Yahoo Streaming Benchmark with its
-- original semantics on JSON ad events (bench/gen_inputs.py ysb): keep the
-- views, join ad -> campaign, count per campaign per 10 s event-time window.
-- Same query as examples/yahoo/yahoo.sql, with a SQLite sink.
CREATE SOURCE ad_events (
  user_id    VARCHAR,
  page_id    VARCHAR,
  ad_id      VARCHAR,
  ad_type    VARCHAR,
  event_type VARCHAR,
  event_time TIMESTAMP,
  ip_address VARCHAR,
  WATERMARK FOR event_time AS event_time - INTERVAL '1' SECOND
) WITH (connector = 'file', path = '${input}/events', format = 'jsonl');

CREATE TABLE campaigns (
  ad_id       VARCHAR,
  campaign_id VARCHAR,
  PRIMARY KEY (ad_id)
) WITH (connector = 'file', path = '${input}/campaigns.csv');

CREATE SINK campaign_views WITH (connector = 'sqlite', path = '${out}/result.db', table = 'result') AS
SELECT window_start, window_end, c.campaign_id, COUNT(*) AS views
FROM ad_events AS e
JOIN campaigns FOR SYSTEM_TIME AS OF e.event_time AS c ON c.ad_id = e.ad_id
WHERE e.event_type = 'view' AND c.campaign_id IS NOT NULL
GROUP BY TUMBLE(e.event_time, INTERVAL '10' SECOND), c.campaign_id;
