#!/usr/bin/python3
"""tools/train_model.py: exported student trees scored in pure Python equal sklearn's
predictions; the JSON follows docs/model.md; the committed model and golden set agree."""
import csv
import json
import math
import os
import sys
import unittest

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))
import train_model  # noqa: E402

MODELS = os.path.join(REPO, "classifier", "models")


class Args:
    student_trees = 25
    student_depth = 4
    student_rows = 5000
    seed_model = 3


def check_model(tc, model):
    tc.assertEqual(model["format"], "crawlgate-model")
    tc.assertEqual(model["version"], 1)
    tc.assertEqual(model["kind"], "trees")
    tc.assertIn(model["link"], ("logistic", "identity"))
    tc.assertEqual(model["transform"], {"kind": "none"})
    tc.assertTrue(math.isfinite(model["base_score"]))
    tc.assertLessEqual(len(model["trees"]), 512)
    nf = len(model["features"])
    for tree in model["trees"]:
        nodes = tree["nodes"]
        tc.assertLessEqual(len(nodes), 256)
        for i, n in enumerate(nodes):
            if "leaf" in n:
                tc.assertEqual(set(n), {"leaf"})
                tc.assertTrue(math.isfinite(n["leaf"]))
            else:
                tc.assertEqual(set(n), {"feature", "threshold", "left", "right"})
                tc.assertTrue(0 <= n["feature"] < nf)
                tc.assertTrue(math.isfinite(n["threshold"]))
                tc.assertTrue(i < n["left"] < len(nodes) and i < n["right"] < len(nodes))


class RoundTripTest(unittest.TestCase):
    def test_export_equals_sklearn(self):
        rng = np.random.default_rng(5)
        n, f = 4000, 6
        X = rng.normal(size=(n, f))
        X[:, 2] = rng.integers(0, 3, n)  # a discrete column: many ties at thresholds
        logit = 2 * X[:, 0] - X[:, 1] * X[:, 2] + np.sin(3 * X[:, 3])
        names = ["f%d" % i for i in range(f)]
        student = train_model.fit_student(train_model.Dataset(
            X, names, np.array(["c"] * n), np.array(["a"] * n), np.array(["human"] * n),
            np.array([""] * n)), logit, Args)
        model = train_model.export_student(student, names, {})
        model = json.loads(json.dumps(model))  # through JSON text, as the C++ side reads it
        check_model(self, model)
        Xt = rng.normal(size=(500, f)).astype(np.float32).astype(np.float64)
        Xt[:, 2] = rng.integers(0, 3, 500)
        ours = train_model.score_model(model, Xt)
        ref = train_model.sigmoid(student.predict(Xt))
        self.assertLess(np.abs(ours - ref).max(), 1e-12)
        # NaN goes left: equal to the smallest value in every compare
        Xn = Xt[:50].copy()
        Xn[:, 0] = np.nan
        Xl = Xt[:50].copy()
        Xl[:, 0] = -np.inf
        np.testing.assert_array_equal(train_model.score_model(model, Xn),
                                      train_model.score_model(model, Xl))

    def test_threshold_at_fpr(self):
        s = np.linspace(0, 1, 10000)
        t = train_model.threshold_at_fpr(s, 0.001)
        self.assertLessEqual((s >= t).mean(), 0.001)
        self.assertGreaterEqual((s >= t).mean(), 0.0009)


@unittest.skipUnless(os.path.exists(os.path.join(MODELS, "crawlgate-model.json")),
                     "no committed model")
class CommittedModelTest(unittest.TestCase):
    def test_committed_model_matches_golden(self):
        with open(os.path.join(MODELS, "crawlgate-model.json")) as f:
            model = json.load(f)
        check_model(self, model)
        with open(os.path.join(MODELS, "golden.csv")) as f:
            r = csv.reader(f)
            header = next(r)
            rows = [[float(x) for x in row] for row in r]
        self.assertEqual(header[:-1], model["features"])
        self.assertEqual(header[-1], "score")
        self.assertGreaterEqual(len(rows), 100)
        a = np.array(rows)
        got = train_model.score_model(model, a[:, :-1])
        np.testing.assert_allclose(got, a[:, -1], rtol=0, atol=1e-12)


if __name__ == "__main__":
    unittest.main()
