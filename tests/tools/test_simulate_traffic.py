#!/usr/bin/python3
"""tools/simulate_traffic.py: determinism, format and label coverage on a short run."""
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIM = os.path.join(REPO, "tools", "simulate_traffic.py")
LABELS = {"human", "stealth", "declared_ai", "search_bot", "feed_reader", "monitor",
          "link_preview", "scanner"}


def run(seed, out, minutes="3"):
    # enough of every population for a 3-minute window
    subprocess.run([sys.executable, SIM, "--seed", str(seed), "--minutes", minutes, "--out", out,
                    "--humans", "600", "--stealth-naive", "40", "--stealth-rotating", "40",
                    "--stealth-careful", "40", "--stealth-very-careful", "40",
                    "--declared-ai", "60", "--search-bots", "40", "--feed-readers", "60",
                    "--link-previews", "100", "--scanners", "60"],
                   check=True, stdout=subprocess.DEVNULL)


def digest(d):
    h = hashlib.sha256()
    for name in ("access.jsonl", "labels.csv", "requests.jsonl"):
        with open(os.path.join(d, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


class SimulatorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.a = os.path.join(cls.tmp.name, "a")
        cls.b = os.path.join(cls.tmp.name, "b")
        cls.c = os.path.join(cls.tmp.name, "c")
        run(7, cls.a)
        run(7, cls.b)
        run(8, cls.c)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_deterministic_per_seed(self):
        self.assertEqual(digest(self.a), digest(self.b))
        self.assertNotEqual(digest(self.a), digest(self.c))

    def test_access_log_format_and_order(self):
        keys = ["ts", "ip", "peer", "method", "target", "version", "headers", "status", "bytes",
                "duration_ms", "request_id"]
        last = 0.0
        n = 0
        with open(os.path.join(self.a, "access.jsonl")) as f:
            for line in f:
                rec = json.loads(line)
                self.assertEqual(list(rec.keys()), keys)
                self.assertGreaterEqual(rec["ts"], last)
                last = rec["ts"]
                self.assertTrue(rec["target"].startswith("/"))
                self.assertEqual(len(rec["request_id"]), 32)
                names = [h[0].lower() for h in rec["headers"]]
                self.assertEqual(names[0], "host")
                self.assertIn("user-agent", names)
                for k, v in rec["headers"]:
                    if k.lower() == "cookie":
                        self.assertEqual(v, "[redacted]")
                n += 1
        self.assertGreater(n, 500)

    def test_labels_cover_every_class_and_variant(self):
        with open(os.path.join(self.a, "labels.csv")) as f:
            rows = list(csv.DictReader(f))
        with open(os.path.join(self.a, "access.jsonl")) as f:
            self.assertEqual(sum(1 for _ in f), len(rows))
        self.assertEqual([int(r["line"]) for r in rows], list(range(1, len(rows) + 1)))
        self.assertEqual({r["label"] for r in rows}, LABELS)
        variants = {r["variant"] for r in rows if r["label"] == "stealth"}
        self.assertEqual(variants, {"naive", "rotating", "careful", "very_careful"})

    def test_behaviour_sanity(self):
        with open(os.path.join(self.a, "labels.csv")) as f:
            labels = list(csv.DictReader(f))
        with open(os.path.join(self.a, "access.jsonl")) as f:
            recs = [json.loads(l) for l in f]
        by = {}
        for lab, rec in zip(labels, recs):
            by.setdefault((lab["label"], lab["variant"]), []).append(rec)

        def asset_share(rs):
            return sum(r["target"].startswith("/static/") or r["target"] == "/favicon.ico"
                       for r in rs) / len(rs)

        def has(rs, name):
            return sum(any(h[0].lower() == name for h in r["headers"]) for r in rs) / len(rs)

        self.assertGreater(asset_share(by[("human", "")]), 0.3)
        self.assertGreater(has(by[("human", "")], "cookie"), 0.3)
        self.assertGreater(has(by[("human", "")], "referer"), 0.5)
        for v in ("naive", "rotating", "careful"):
            self.assertEqual(asset_share(by[("stealth", v)]), 0.0, v)
        self.assertGreater(asset_share(by[("stealth", "very_careful")]), 0.2)
        self.assertEqual(has(by[("stealth", "naive")], "accept-language"), 0.0)
        self.assertTrue(all(r["status"] == 404 for r in by[("scanner", "")]
                            if r["target"] in ("/.env", "/wp-login.php")))
        # rotating crawlers use many addresses of one /24; NAT: several humans share an address
        ips = {r["ip"] for r in by[("stealth", "rotating")]}
        self.assertGreater(len(ips), 10)
        actors_per_ip = {}
        for lab, rec in zip(labels, recs):
            if lab["label"] == "human":
                actors_per_ip.setdefault(rec["ip"], set()).add(lab["client"])
        self.assertGreater(max(len(v) for v in actors_per_ip.values()), 1)


if __name__ == "__main__":
    unittest.main()
