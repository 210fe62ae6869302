-- ysb_kafka.sql — workload (c) from Kafka: the Yahoo Streaming Benchmark
-- (bench/jobs/ysb_json.sql) reading its JSON ad events from a Kafka topic
-- (one event per message, as the benchmark's producer writes them) and
-- writing the counts exactly once to a Kafka topic as JSON Lines (read it
-- with isolation.level=read_committed). The campaigns stay a file table.
--
--   sluice run bench/jobs/ysb_kafka.sql --set input=DIR --set bootstrap=HOST:PORT \
--       --set topic=ysb --set out_topic=campaign_views --set bounded=true \
--       --set checkpoint.dir=out/ck
--
-- bench/kafka_workloads.py produces the events of bench/gen_inputs.py ysb
-- (part i into partition i) and runs this beside the Kafka Streams peer.
CREATE SOURCE ad_events (
  user_id    VARCHAR,
  page_id    VARCHAR,
  ad_id      VARCHAR,
  ad_type    VARCHAR,
  event_type VARCHAR,
  event_time TIMESTAMP,
  ip_address VARCHAR,
  WATERMARK FOR event_time AS event_time - INTERVAL '1' SECOND
) WITH (connector = 'kafka', bootstrap.servers = '${bootstrap:-127.0.0.1:9092}',
        topic = '${topic:-ysb}', format = 'jsonl', bounded = '${bounded:-false}');

CREATE TABLE campaigns (
  ad_id       VARCHAR,
  campaign_id VARCHAR,
  PRIMARY KEY (ad_id)
) WITH (connector = 'file', path = '${input}/campaigns.csv');

CREATE SINK campaign_views WITH (
  connector = 'kafka', bootstrap.servers = '${bootstrap:-127.0.0.1:9092}',
  topic = '${out_topic:-campaign_views}', format = 'jsonl'
) AS
SELECT window_start, window_end, c.campaign_id, COUNT(*) AS views
FROM ad_events AS e
JOIN campaigns FOR SYSTEM_TIME AS OF e.event_time AS c ON c.ad_id = e.ad_id
WHERE e.event_type = 'view' AND c.campaign_id IS NOT NULL
GROUP BY TUMBLE(e.event_time, INTERVAL '10' SECOND), c.campaign_id;
