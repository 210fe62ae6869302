"""Restart after kill -9 with and without the lookup tables' images
(docs/state.md "Table images"), measured as bench/harness.py's
checkpoint_bench does (a slow first life with checkpoints every 200 ms,
kill -9, a restart at full speed, the time until the result database holds
a newer epoch marker), plus the CPU seconds of loading the tables alone (a
run over a one-event input). Meant to be run by hand, under nice, beside
other work; it prints what bench/RESULTS.md records.

usage: python3 bench/restart_image.py DATA_DIR OUT_DIR [RUNS]
"""
import os
import re
import resource
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import restart_after_kill  # noqa: E402  (the harness's own measurement)

SLUICE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "sluice")


def job(data, out, db, images):
    return [SLUICE, "run", "telecom-age", "--events", os.path.join(data, "events"),
            "--subscribers", os.path.join(data, "subscribers.csv"),
            "--cells", os.path.join(data, "cells.csv"),
            "--key-file", os.path.join(data, "keys.txt"), "--db", db, "--out-dir", out,
            "--set", f"table.images={'true' if images else 'false'}"]


def restart(data, out, images):
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    db = os.path.join(out, "r.db")
    cmd = job(data, out, db, images) + ["--checkpoint-dir", os.path.join(out, "ck"),
                                        "--checkpoint-interval-ms", "200"]
    first, err = restart_after_kill(cmd, db)
    load = float(err.split("loaded in ")[1].split(" s")[0])
    used = len(re.findall(r'msg="table image used"', err))
    return first, load, used


def load_cpu(data, out, images):
    """CPU seconds (user + sys) of a run whose event input is one record."""
    tiny = os.path.join(out, "tiny")
    ev = os.path.join(tiny, "events")
    shutil.rmtree(tiny, ignore_errors=True)
    os.makedirs(ev)
    src = os.path.join(data, "events", sorted(os.listdir(os.path.join(data, "events")))[0])
    with open(src) as f, open(os.path.join(ev, "e.csv"), "w") as g:
        g.write(f.readline())
        g.write(f.readline())
    for n in ("subscribers.csv", "cells.csv", "keys.txt"):
        os.symlink(os.path.join(os.path.abspath(data), n), os.path.join(tiny, n))
    ck = os.path.join(out, "ck-load")
    cmd = job(tiny, os.path.join(out, "o"), os.path.join(out, "l.db"), images)
    cmd += ["--checkpoint-dir", ck]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)  # writes
    shutil.rmtree(os.path.join(out, "o"), ignore_errors=True)
    os.unlink(os.path.join(out, "l.db"))
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cp = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                        check=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = float(cp.stderr.split("loaded in ")[1].split(" s")[0])
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), load


def main():
    data, out = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    for i in range(runs):
        for images in (False, True):
            cpu, wall = load_cpu(data, os.path.join(out, "cpu"), images)
            print(f"run {i} images={images}: load-only run CPU {cpu:.2f} s, tables loaded in "
                  f"{wall:.2f} s", flush=True)
            first, load, used = restart(data, os.path.join(out, "restart"), images)
            print(f"run {i} images={images}: restart to first new output {first:.2f} s "
                  f"(tables {load:.2f} s, images used {used})", flush=True)


if __name__ == "__main__":
    main()
