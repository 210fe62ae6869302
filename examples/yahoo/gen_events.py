#!/usr/bin/env python3
"""gen_events.py — writes a small, deterministic input for the Yahoo
Streaming Benchmark query: ad events as JSON Lines (user_id, page_id, ad_id,
ad_type, event_type view|click|purchase, event_time in epoch ms,
ip_address) and the ad -> campaign table as CSV (10 ads per campaign, as in
the benchmark).

usage: gen_events.py OUT_DIR [N] [SEED]"""
import json
import os
import random
import sys
import uuid


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 11)
    os.makedirs(out, exist_ok=True)
    u = lambda: str(uuid.UUID(int=rng.getrandbits(128)))
    campaigns = [u() for _ in range(10)]
    ads = [(u(), c) for c in campaigns for _ in range(10)]
    with open(os.path.join(out, "campaigns.csv"), "w") as f:
        f.write("ad_id,campaign_id\n")
        for a, c in ads:
            f.write(f"{a},{c}\n")
    t = 1700000000000
    with open(os.path.join(out, "events.jsonl"), "w") as f:
        for i in range(n):
            t += rng.randint(0, 40)
            f.write(json.dumps({
                "user_id": u(), "page_id": u(),
                "ad_id": rng.choice(ads)[0] if rng.random() > 0.01 else u(),  # 1% unknown ads
                "ad_type": rng.choice(["banner", "modal", "sponsored-search", "mail", "mobile"]),
                "event_type": rng.choice(["view", "click", "purchase"]),
                "event_time": str(t - rng.randint(0, 500)),
                "ip_address": "1.2.3.4"}) + "\n")


if __name__ == "__main__":
    main()
