-- reference.sql — the telecom-age result computed independently of sluice,
-- by SQLite over the raw input. Expects tables events(ts, msisdn,
-- event_type, cell_id, duration_s, bytes), subscribers(msisdn, birth_date,
-- gender) and cells(cell_id, area) imported from the CSV files as text, and
-- parameters in table params(window_ms, k).
-- Same rules as DESIGN.md: window [floor(ts/len)*len, +len); age in completed
-- years at the window's start date (UTC); bands; 'unknown' without data;
-- groups with fewer than k distinct subscribers are withheld.
CREATE TABLE expected AS
WITH p AS (SELECT window_ms AS w, k FROM params),
e AS (
  SELECT (CAST(ev.ts AS INTEGER) / p.w) * p.w AS ws, ev.msisdn, ev.event_type,
         COALESCE(c.area, 'unknown') AS area, s.birth_date
  FROM events ev CROSS JOIN p
  LEFT JOIN cells c ON CAST(c.cell_id AS INTEGER) = CAST(ev.cell_id AS INTEGER)
  LEFT JOIN subscribers s ON s.msisdn = ev.msisdn
),
a AS (
  SELECT ws, msisdn, event_type, area,
    CASE WHEN birth_date IS NULL OR birth_date = '' THEN NULL ELSE
      CAST(strftime('%Y', ws / 1000, 'unixepoch') AS INTEGER)
      - CAST(substr(birth_date, 1, 4) AS INTEGER)
      - (strftime('%m-%d', ws / 1000, 'unixepoch') < substr(birth_date, 6, 5))
    END AS age
  FROM e
),
b AS (
  SELECT ws, msisdn, event_type, area,
    CASE WHEN age IS NULL OR age < 0 THEN 'unknown'
         WHEN age <= 17 THEN '0-17' WHEN age <= 24 THEN '18-24'
         WHEN age <= 34 THEN '25-34' WHEN age <= 44 THEN '35-44'
         WHEN age <= 54 THEN '45-54' WHEN age <= 64 THEN '55-64'
         ELSE '65+' END AS age_band
  FROM a
)
SELECT ws AS window_start, ws + (SELECT w FROM p) AS window_end, event_type, area,
       age_band, COUNT(*) AS events, COUNT(DISTINCT msisdn) AS subscribers
FROM b
GROUP BY ws, event_type, area, age_band
HAVING COUNT(DISTINCT msisdn) >= (SELECT k FROM p);
