"""The SQL venue report (examples/venues/venue_report.sql) with a
PostgreSQL sink: live and final rows upserted into a real server equal the
rows `sluice run venue-report` upserts into SQLite on the same generated
input with a staged crowd (test_venue_sql_golden.py checks the SQLite side
against the CLI job and, through it, the SQLite reference)."""
import os
import sqlite3
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")
EXAMPLE = os.path.join(ROOT, "examples", "venues", "venue_report.sql")


def sl(*args):
    r = subprocess.run([SLUICE, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def test_sql_venue_report_into_postgres(pg, pgdb, tmp_path):
    data = tmp_path / "data"
    sl("gen", "--out", data, "--events", 60000, "--subscribers", 6000, "--cells", 400,
       "--areas", 10, "--set", "span.ms=21600000", "--set", "crowd.size=800",
       "--set", "crowd.cells=301;302", "--set", "crowd.start=2026-01-05T02:00:00Z")
    sl("keygen", data / "keys.txt")
    with open(EXAMPLE) as f:
        script = f.read().replace("connector = 'sqlite', path = '${db:-out/venues.db}'",
                                  "connector = 'postgres', dsn = '${pg}'", 1)
    assert "connector = 'postgres'" in script
    pg_sql = tmp_path / "venue_report_pg.sql"
    pg_sql.write_text(script)
    sl("run", pg_sql, "--quiet", "--set", f"data={data}", "--set", f"pg={pg.dsn(pgdb)}",
       "--set", f"venues={data / 'venues.csv'}",
       "--set", f"market_share={data / 'market_share.csv'}",
       "--set", f"output.dir={tmp_path / 'o1'}", "--set", "parallelism=2",
       "--set", "emit_every_ms=600000", "--set", "k=5")
    db = tmp_path / "cli.db"
    sl("run", "venue-report", "--quiet", "--set", f"events={data / 'events'}",
       "--set", f"subscribers={data / 'subscribers.csv'}",
       "--set", f"key.file={data / 'keys.txt'}", "--set", f"venues={data / 'venues.csv'}",
       "--set", f"market.share={data / 'market_share.csv'}", "--set", f"db={db}",
       "--set", f"output.dir={tmp_path / 'o2'}", "--set", "metrics.address=off",
       "--set", "emit.every.ms=600000", "--set", "k=5")
    con = sqlite3.connect(db)
    want = sorted(tuple(str(v) for v in r) for r in con.execute(
        "SELECT venue, report, slice_start, age_band, gender, subscribers, extrapolated, "
        "COALESCE(arrivals, '\\N'), COALESCE(departures, '\\N'), as_of, final "
        "FROM venue_report"))
    con.close()
    got = sorted(tuple(r) for r in pg.psql(
        "SELECT venue, report, (extract(epoch FROM slice_start) * 1000)::bigint, age_band, "
        "gender, subscribers, extrapolated, arrivals, departures, "
        "(extract(epoch FROM as_of) * 1000)::bigint, final::int FROM venue_report", db=pgdb))
    assert len(want) > 20
    assert got == want, sys.stderr.write(f"{got[:3]} vs {want[:3]}\n")
