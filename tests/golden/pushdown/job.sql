-- Projection and predicate pushdown (issue 10): the WHERE conjuncts on
-- source columns run before the lookup join (a VARCHAR = constant and a
-- NOT IN list as the filter kernel), and the VARCHAR columns the query never
-- reads (user_id, note: long, escaped, non-ASCII) are not copied. Records
-- with a bad value are dead-lettered whether or not the query reads the
-- column (n is read, m is not, kind has a domain).
CREATE SOURCE ev (
  user_id VARCHAR,
  ad_id   VARCHAR,
  note    VARCHAR,
  kind    VARCHAR CHECK (kind IN ('view', 'click', 'purchase')),
  channel VARCHAR,
  n       BIGINT,
  m       BIGINT,
  t       TIMESTAMP,
  WATERMARK FOR t AS t - INTERVAL '1' SECOND
) WITH (connector = 'file', path = '${dir}/input/events.jsonl', format = 'jsonl');

CREATE TABLE campaigns (
  ad_id       VARCHAR,
  campaign_id VARCHAR,
  PRIMARY KEY (ad_id)
) WITH (connector = 'file', path = '${dir}/input/campaigns.csv');

CREATE SINK r WITH (connector = 'sqlite', path = '${out}/result.db', table = 'result') AS
SELECT window_start, window_end, c.campaign_id, e.channel, COUNT(*) AS views, SUM(e.n) AS total
FROM ev AS e
JOIN campaigns FOR SYSTEM_TIME AS OF e.t AS c ON c.ad_id = e.ad_id
WHERE e.kind = 'view' AND c.campaign_id IS NOT NULL AND e.channel NOT IN ('spam', 'test')
GROUP BY TUMBLE(e.t, INTERVAL '10' SECOND), c.campaign_id, e.channel;
