#!/usr/bin/python3
"""tools/evaluate_model.py end to end: a short simulated run through `crawlgate replay` with the
embedded default config (CRAWLGATE_BINARY names the binary)."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "evaluate_model.py")


class EvaluateModelTest(unittest.TestCase):
    def test_reports_every_population_and_never_refuses_people(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "eval.json")
            run = subprocess.run([sys.executable, TOOL, "--seed", "33", "--minutes", "10",
                                  "--crawlgate", os.environ["CRAWLGATE_BINARY"], "--json", out],
                                 capture_output=True, text=True, timeout=240)
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            self.assertIn("stealth recall", run.stdout)
            with open(out) as f:
                report = json.load(f)
        pops = report["populations"]
        for pop in ("human", "stealth/naive", "stealth/rotating", "monitor"):
            self.assertIn(pop, pops)
        self.assertEqual(pops["human"]["scored"], 1.0)
        self.assertEqual(report["human_false_positives"]["requests_refused"], 0.0)
        self.assertEqual(pops["monitor"]["refused"], 0.0)
        self.assertGreater(pops["stealth/naive"]["refused"], 0.3)
        self.assertEqual(report["stealth_recall_at_0.1%_fpr"]["stealth/rotating"]["actors"], 1.0)

    def test_a_failing_replay_is_reported(self):
        with tempfile.TemporaryDirectory() as tmp:
            bad = os.path.join(tmp, "bad.yaml")
            with open(bad, "w") as f:
                f.write("listen: [oops\n")
            run = subprocess.run([sys.executable, TOOL, "--minutes", "1", "--config", bad,
                                  "--crawlgate", os.environ["CRAWLGATE_BINARY"]],
                                 capture_output=True, text=True, timeout=120)
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("crawlgate replay failed", run.stderr)
        self.assertIn("bad.yaml:", run.stderr)


if __name__ == "__main__":
    unittest.main()
