#!/usr/bin/env python3
"""gen_inputs.py — deterministic bench-scale inputs for the Yahoo Streaming
Benchmark (workload c) and Hello Twitter (workload d).

  gen_inputs.py ysb OUT_DIR N [SEED]
      OUT_DIR/events/part-{0,1}.jsonl
                            ad events as in the benchmark (~250 bytes:
                            user_id, page_id, ad_id UUIDs, ad_type,
                            event_type view|click|purchase, event_time epoch
                            ms as a string, ip_address)
      OUT_DIR/events-bin/part-{0,1}.bin
                            the same events, same order, as fixed-width
                            binary records (format='binary', widths below)
      OUT_DIR/campaigns.csv ad_id,campaign_id: 100 campaigns x 10 ads
      OUT_DIR/expected.csv  the query's result rows, counted here while
                            generating (window_start,window_end,campaign_id,
                            views), the bench run's independent reference
  gen_inputs.py twitter OUT_DIR N [SEED]
      OUT_DIR/tweets/part-{0,1}.jsonl
                            flat tweets (id_str, lang, timestamp_ms, text,
                            user_screen_name, source)
      OUT_DIR/expected.csv  window_start,window_end,lang,tweets

Events span about 10 minutes of event time (so a 10 s window holds many
events per key, as in the benchmark at speed), each up to 500 ms out of
order (below the jobs' 1 s watermark delay), and 1 % of the ad events name
an ad that is in no campaign (the join drops them). Event i goes to part
i % 2, so both parts cover the same span of event time (two partitions for
parallelism 2, read by sluice and Flink alike)."""
import os
import random
import struct
import sys
import uuid

YSB_WIDTHS = "user_id:36,page_id:36,ad_id:36,ad_type:16,event_type:8,ip_address:16"
AD_TYPES = ["banner", "modal", "sponsored-search", "mail", "mobile"]
EVENT_TYPES = ["view", "click", "purchase"]
LANGS = ["en", "en", "en", "ja", "es", "pt", "ar", "ko", "fr", "de", "und", "tr", "id",
         "th", "ru", "it"]
SPAN_MS = 600_000
T0 = 1_700_000_000_000
PARTS = 2


def pad(s, n):
    b = s.encode()
    assert len(b) <= n
    return b + b"\0" * (n - len(b))


def ysb(out, n, rng):
    u = lambda: str(uuid.UUID(int=rng.getrandbits(128)))
    campaigns = [u() for _ in range(100)]
    ads = [(u(), c) for c in campaigns for _ in range(10)]
    with open(os.path.join(out, "campaigns.csv"), "w") as f:
        f.write("ad_id,campaign_id\n")
        f.writelines(f"{a},{c}\n" for a, c in ads)
    users = [u() for _ in range(50_000)]
    pages = [u() for _ in range(5_000)]
    unknown = [u() for _ in range(100)]
    ad_ids = [a for a, _ in ads]
    campaign_of = dict(ads)
    expected = {}
    ips = [f"10.{i >> 8 & 255}.{i & 255}.{(i * 7) & 255}" for i in range(1000)]
    # pre-encoded fixed-width parts for the binary files
    bu = {s: pad(s, 36) for s in users + pages + ad_ids + unknown}
    bt = {s: pad(s, 16) for s in AD_TYPES}
    be = {s: pad(s, 8) for s in EVENT_TYPES}
    bi = {s: pad(s, 16) for s in ips}
    ts = struct.Struct("<q")
    rnd, choice = rng.random, rng.choice
    os.makedirs(os.path.join(out, "events"), exist_ok=True)
    os.makedirs(os.path.join(out, "events-bin"), exist_ok=True)
    fj = [open(os.path.join(out, "events", f"part-{k}.jsonl"), "w") for k in range(PARTS)]
    fb = [open(os.path.join(out, "events-bin", f"part-{k}.bin"), "wb") for k in range(PARTS)]
    lines = [[] for _ in range(PARTS)]
    recs = [[] for _ in range(PARTS)]
    for i in range(n):
        k = i % PARTS
        ad = choice(ad_ids) if rnd() > 0.01 else choice(unknown)
        us, pg, at, et, ip = choice(users), choice(pages), choice(AD_TYPES), \
            choice(EVENT_TYPES), choice(ips)
        t = T0 + i * SPAN_MS // n - int(rnd() * 500)
        lines[k].append(f'{{"user_id": "{us}", "page_id": "{pg}", "ad_id": "{ad}", '
                        f'"ad_type": "{at}", "event_type": "{et}", "event_time": "{t}", '
                        f'"ip_address": "{ip}"}}\n')
        if et == "view" and ad in campaign_of:
            key = (t // 10_000 * 10_000, campaign_of[ad])
            expected[key] = expected.get(key, 0) + 1
        recs[k].append(b"".join((bu[us], bu[pg], bu[ad], bt[at], be[et], ts.pack(t), bi[ip])))
        if len(lines[k]) == 65536 or i >= n - PARTS:
            fj[k].write("".join(lines[k]))
            fb[k].write(b"".join(recs[k]))
            lines[k], recs[k] = [], []
    for f in fj + fb:
        f.close()
    write_expected(out, expected)


def twitter(out, n, rng):
    rnd, choice = rng.random, rng.choice
    names = [f"user{rng.getrandbits(40):x}" for _ in range(20_000)]
    sources = ["Twitter for iPhone", "Twitter for Android", "Twitter Web App", "TweetDeck"]
    words = ["stream", "window", "count", "hello", "world", "data", "event", "time",
             "sluice", "flink", "kafka", "latency", "throughput", "checkpoint"]
    os.makedirs(os.path.join(out, "tweets"), exist_ok=True)
    fs = [open(os.path.join(out, "tweets", f"part-{k}.jsonl"), "w") for k in range(PARTS)]
    lines = [[] for _ in range(PARTS)]
    expected = {}
    for i in range(n):
        k = i % PARTS
        t = T0 + i * SPAN_MS // n - int(rnd() * 500)
        lang = choice(LANGS)
        key = (t // 10_000 * 10_000, lang)
        expected[key] = expected.get(key, 0) + 1
        text = " ".join(choice(words) for _ in range(8))
        lines[k].append(f'{{"id_str": "{10**17 + i}", "lang": "{lang}", '
                        f'"timestamp_ms": "{t}", "text": "{text}", '
                        f'"user_screen_name": "{choice(names)}", "source": "{choice(sources)}"}}\n')
        if len(lines[k]) == 65536 or i >= n - PARTS:
            fs[k].write("".join(lines[k]))
            lines[k] = []
    for f in fs:
        f.close()
    write_expected(out, expected)


def write_expected(out, expected):
    with open(os.path.join(out, "expected.csv"), "w") as f:
        for (ws, key), n in sorted(expected.items()):
            f.write(f"{ws},{ws + 10_000},{key},{n}\n")


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("ysb", "twitter"):
        raise SystemExit(__doc__)
    kind, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    os.makedirs(out, exist_ok=True)
    (ysb if kind == "ysb" else twitter)(out, n, rng)


if __name__ == "__main__":
    main()
