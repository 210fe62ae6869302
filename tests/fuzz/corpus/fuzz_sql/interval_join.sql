-- call_then_data.sql — every call followed by a data session of the same
-- subscriber within 5 minutes (an interval join of the event stream with
-- itself, docs/sql.md "Stream joins"). Subscribers are joined on their
-- pseudonym; the raw msisdn never passes the first operator.
--   sluice gen --out data && sluice keygen data/keys.txt
--   sluice run examples/telecom/call_then_data.sql --set data=data --set db=out/pairs.db
SET 'key.file' = '${data}/keys.txt';

CREATE SOURCE events (
  ts TIMESTAMP, msisdn VARCHAR, event_type VARCHAR, cell_id BIGINT,
  duration_s BIGINT, bytes BIGINT,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'file', path = '${data}/events', format = 'csv');

CREATE SINK call_then_data WITH (connector = 'sqlite', path = '${db}', table = 'pairs') AS
SELECT a.ts AS call_ts, a.cell_id AS call_cell, b.ts AS data_ts, b.bytes AS bytes,
       b.cell_id AS data_cell
FROM events AS a JOIN events AS b
  ON PSEUDONYMIZE(a.msisdn) = PSEUDONYMIZE(b.msisdn)
 AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '5' MINUTE
WHERE a.event_type = 'CALL_PLACED' AND b.event_type = 'DATA_SESSION';
