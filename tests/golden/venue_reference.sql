-- venue_reference.sql — the venue report's counts computed independently of
-- sluice, by SQLite over the raw input. Expects tables events(ts, msisdn,
-- event_type, cell_id, ...) and subscribers(msisdn, birth_date, gender)
-- imported from the CSV files as text, venues(name, start_ms, end_ms),
-- venue_cells(name, cell), ticks(name, tick) and params(slice_ms, blur_ms).
-- Rules (docs/venues.md): a subscriber is at a venue when one of its events
-- is in the venue's cells and in [start, end); its age is taken in
-- completed years at the venue's start date (UTC), 'unknown' without data;
-- gender F, M, X or 'unknown'. No k here: the test applies k and the
-- release rule to these exact counts.
CREATE TABLE hits AS
SELECT v.name AS venue, v.start_ms, v.end_ms, ev.msisdn, CAST(ev.ts AS INTEGER) AS ts
FROM events ev
JOIN venue_cells vc ON vc.cell = CAST(ev.cell_id AS INTEGER)
JOIN venues v ON v.name = vc.name
WHERE CAST(ev.ts AS INTEGER) >= v.start_ms AND CAST(ev.ts AS INTEGER) < v.end_ms;

CREATE TABLE people AS
WITH h AS (
  SELECT venue, start_ms, msisdn, MIN(ts) AS first_ts, MAX(ts) AS last_ts
  FROM hits GROUP BY venue, msisdn
),
a AS (
  SELECT h.*, s.gender,
    CASE WHEN s.birth_date IS NULL OR s.birth_date = '' THEN NULL ELSE
      CAST(strftime('%Y', h.start_ms / 1000, 'unixepoch') AS INTEGER)
      - CAST(substr(s.birth_date, 1, 4) AS INTEGER)
      - (strftime('%m-%d', h.start_ms / 1000, 'unixepoch') < substr(s.birth_date, 6, 5))
    END AS age
  FROM h LEFT JOIN subscribers s ON s.msisdn = h.msisdn
)
SELECT venue, start_ms, msisdn, first_ts, last_ts,
  CASE WHEN age IS NULL OR age < 0 THEN 'unknown'
       WHEN age <= 17 THEN '0-17' WHEN age <= 24 THEN '18-24'
       WHEN age <= 34 THEN '25-34' WHEN age <= 44 THEN '35-44'
       WHEN age <= 54 THEN '45-54' WHEN age <= 64 THEN '55-64'
       ELSE '65+' END AS age_band,
  CASE WHEN gender IN ('F', 'M', 'X') THEN gender ELSE 'unknown' END AS gender
FROM a;

-- people present by the end: the final counts
CREATE TABLE final_counts AS
SELECT venue, age_band, gender, COUNT(*) AS n FROM people GROUP BY venue, age_band, gender;

-- people whose first event is before each early firing
CREATE TABLE tick_counts AS
SELECT t.name AS venue, t.tick, p.age_band, p.gender, COUNT(*) AS n
FROM ticks t JOIN people p ON p.venue = t.name AND p.first_ts < t.tick
GROUP BY t.name, t.tick, p.age_band, p.gender;

-- slices [start + j * slice_ms, + slice_ms): present, arrivals, departures
CREATE TABLE slice_present AS
SELECT h.venue, (h.ts - h.start_ms) / (SELECT slice_ms FROM params) AS j, p.age_band,
       p.gender, COUNT(DISTINCT h.msisdn) AS n
FROM hits h JOIN people p ON p.venue = h.venue AND p.msisdn = h.msisdn
GROUP BY h.venue, j, p.age_band, p.gender;
CREATE TABLE slice_arrivals AS
SELECT venue, (first_ts - start_ms) / (SELECT slice_ms FROM params) AS j, age_band, gender,
       COUNT(*) AS n FROM people GROUP BY venue, j, age_band, gender;
CREATE TABLE slice_departures AS
SELECT venue, (last_ts - start_ms) / (SELECT slice_ms FROM params) AS j, age_band, gender,
       COUNT(*) AS n FROM people GROUP BY venue, j, age_band, gender;

-- time blurring by up to blur_ms can only change whether a subscriber is
-- at a venue if one of its events in the venue's cells lies within blur_ms
-- of the venue's start or end: those are counted per group, as the bound
-- of the difference blurring may make.
CREATE TABLE ambiguous AS
WITH b AS (SELECT blur_ms AS w FROM params),
amb AS (
  SELECT DISTINCT v.name AS venue, ev.msisdn
  FROM events ev CROSS JOIN b
  JOIN venue_cells vc ON vc.cell = CAST(ev.cell_id AS INTEGER)
  JOIN venues v ON v.name = vc.name
  WHERE ABS(CAST(ev.ts AS INTEGER) - v.start_ms) <= b.w
     OR ABS(CAST(ev.ts AS INTEGER) - v.end_ms) <= b.w
)
SELECT venue, COUNT(*) AS n FROM amb GROUP BY venue;
