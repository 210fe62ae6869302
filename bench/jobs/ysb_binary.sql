-- ysb_binary.sql — workload (c), binary variant: the Yahoo Streaming Benchmark
-- on the same ad events as fixed-width binary records (events-bin/, see
-- src/io/binrec.c; strings NUL-padded to the widths below): keep the
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
) WITH (connector = 'file', path = '${input}/events-bin', format = 'binary',
        'binary.widths' = 'user_id:36,page_id:36,ad_id:36,ad_type:16,event_type:8,ip_address:16');

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
