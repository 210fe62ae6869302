#!/usr/bin/env python3
"""gen_tweets.py — writes a small, deterministic stream of tweets as JSON
Lines with Twitter's `lang` and `timestamp_ms` fields (flat objects: the
file source reads flat JSON), a little out of order, for Hello Twitter.

usage: gen_tweets.py OUT.jsonl [N] [SEED]"""
import json
import random
import sys

LANGS = ["en", "en", "en", "ja", "es", "pt", "ar", "ko", "fr", "de", "und"]


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
    t = 1514764800000  # 2018-01-01T00:00:00Z
    with open(out, "w") as f:
        for i in range(n):
            t += rng.randint(0, 120)
            jitter = rng.randint(0, 800)  # < the 1 s watermark delay
            f.write(json.dumps({"id_str": str(10**17 + i), "lang": rng.choice(LANGS),
                                "timestamp_ms": str(t - jitter),
                                "text": f"tweet {i}"}) + "\n")


if __name__ == "__main__":
    main()
