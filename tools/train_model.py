#!/usr/bin/python3
"""Teacher/student training for crawlgate's behavioural classifier (docs/model.md).

  tools/train_model.py --train DIR_A --eval DIR_B [--out classifier/models]

Each DIR holds access.jsonl + labels.csv (tools/simulate_traffic.py) and features.csv written by
the C++ extractor (`crawlgate-features DIR/access.jsonl > DIR/features.csv`); when features.csv
is missing it is produced with --extractor (default: build*/tools/crawlgate-features). The feature
columns are whatever the extractor writes, in its order: Python never computes features.

Target: non-human (every label but `human`) vs human, per request. The teacher is a
HistGradientBoostingClassifier; the student is a GradientBoostingRegressor of shallow trees fitted
to the teacher's logits (its soft labels), exported as the crawlgate-model JSON. The operating
threshold (human request FPR 0.1%) is calibrated on a held-out part of DIR_A (split by address
block), then everything is evaluated on DIR_B (another seed). Also runs the held-out-variant
experiment: the teacher is retrained without one stealth variant and tested on it.

Writes OUT/crawlgate-model.json, OUT/golden.csv (feature rows + the student's score, for the C++
agreement test) and prints a report (also OUT/report.json with --report).
Requires /usr/bin/python3 with Debian's python3-numpy and python3-sklearn.
"""

import argparse
import csv
import datetime
import glob
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FPR_TARGET = 0.001
STEALTH_VARIANTS = ["naive", "rotating", "careful", "very_careful"]
LABELS = ["human", "stealth", "declared_ai", "search_bot", "feed_reader", "monitor",
          "link_preview", "scanner"]


# --------------------------------------------------------------------------------------------
# Data

class Dataset:
    def __init__(self, X, names, clients, actors, labels, variants):
        self.X, self.names, self.clients = X, names, clients
        self.actors, self.labels, self.variants = actors, labels, variants
        self.y = (labels != "human").astype(np.int8)

    def subset(self, mask):
        return Dataset(self.X[mask], self.names, self.clients[mask], self.actors[mask],
                       self.labels[mask], self.variants[mask])

    def group(self):
        """Label/variant key per row: 'stealth/careful', 'human', ..."""
        return np.array([l + "/" + v if l == "stealth" else l
                         for l, v in zip(self.labels, self.variants)])


def find_extractor():
    for pattern in ("build-feat/tools/crawlgate-features", "build/tools/crawlgate-features",
                    "build*/tools/crawlgate-features"):
        for p in sorted(glob.glob(os.path.join(REPO, pattern))):
            if os.access(p, os.X_OK):
                return p
    return None


def ensure_features(d, extractor):
    path = os.path.join(d, "features.csv")
    log = os.path.join(d, "access.jsonl")
    if os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(log):
        return path
    exe = extractor or find_extractor()
    if not exe:
        sys.exit("train_model: %s missing and no crawlgate-features binary found (--extractor)" % path)
    with open(path + ".tmp", "w") as out:
        subprocess.run([exe, log], stdout=out, check=True)
    os.replace(path + ".tmp", path)
    return path


def load(d, extractor=None):
    path = ensure_features(d, extractor)
    with open(path, newline="") as f:
        r = csv.reader(f)
        header = next(r)
        if header[:2] != ["line", "client"]:
            sys.exit("train_model: %s: expected line,client,<features...>" % path)
        names = header[2:]
        lines, clients, rows = [], [], []
        for row in r:
            lines.append(int(row[0]))
            clients.append(row[1])
            rows.append(row[2:])
    X = np.array(rows, dtype=np.float64)
    lines = np.array(lines)
    lab = {}
    with open(os.path.join(d, "labels.csv"), newline="") as f:
        r = csv.reader(f)
        next(r)
        for row in r:
            lab[int(row[0])] = (row[1], row[2], row[3])
    if lines.min() == 0 and 0 not in lab:  # tolerate a 0-based extractor
        lines = lines + 1
    missing = [n for n in lines[:10] if n not in lab]
    if missing:
        sys.exit("train_model: features.csv lines not in labels.csv: %s" % missing)
    actors = np.array([lab[n][0] for n in lines])
    labels = np.array([lab[n][1] for n in lines])
    variants = np.array([lab[n][2] for n in lines])
    return Dataset(X, names, np.array(clients), actors, labels, variants)


def block_of(client):
    if ":" in client:
        return ":".join(client.split(":")[:3])
    return client.rsplit(".", 1)[0]


# --------------------------------------------------------------------------------------------
# Models

def fit_teacher(ds, seed, iters=250):
    pos = ds.y.mean()
    # balance the classes: humans are the class whose error we care about most
    w = np.where(ds.y == 1, 0.5 / max(pos, 1e-9), 0.5 / max(1 - pos, 1e-9))
    t = HistGradientBoostingClassifier(max_iter=iters, learning_rate=0.1, max_leaf_nodes=31,
                                       min_samples_leaf=40, l2_regularization=1.0,
                                       random_state=seed)
    t.fit(ds.X, ds.y, sample_weight=w)
    return t


def teacher_logit(t, X):
    return np.clip(t.decision_function(X), -20, 20)


def fit_student(ds, t_logits, args):
    s = GradientBoostingRegressor(n_estimators=args.student_trees, max_depth=args.student_depth,
                                  learning_rate=0.1, subsample=0.8, min_samples_leaf=20,
                                  random_state=args.seed_model)
    # the student only needs the teacher's function, not every row: a sample keeps this fast
    idx = np.random.default_rng(args.seed_model).permutation(len(t_logits))[:args.student_rows]
    s.fit(ds.X[idx], t_logits[idx])
    return s


def export_student(s, names, extra):
    trees = []
    lr = s.learning_rate
    for est in s.estimators_[:, 0]:
        tr = est.tree_
        nodes = []
        for i in range(tr.node_count):
            if tr.children_left[i] == -1:
                nodes.append({"leaf": float(lr * tr.value[i][0][0])})
            else:
                nodes.append({"feature": int(tr.feature[i]), "threshold": float(tr.threshold[i]),
                              "left": int(tr.children_left[i]), "right": int(tr.children_right[i])})
        trees.append({"nodes": nodes})
    init = s.init_
    base = float(init.constant_[0][0]) if hasattr(init, "constant_") else float(s._raw_predict_init(np.zeros((1, len(names))))[0][0])
    model = {"format": "crawlgate-model", "version": 1,
             "created": datetime.date.today().isoformat(),
             "features": list(names), "transform": {"kind": "none"}, "kind": "trees",
             "base_score": base, "trees": trees, "link": "logistic"}
    model.update(extra)
    return model


def score_model(model, X):
    """Pure-Python scorer of an exported model: the reference the C++ loader must match."""
    raw = np.full(X.shape[0], model["base_score"], dtype=np.float64)
    for tree in model["trees"]:
        nodes = tree["nodes"]
        for r in range(X.shape[0]):
            i = 0
            while "leaf" not in nodes[i]:
                n = nodes[i]
                x = X[r, n["feature"]]
                i = n["left"] if (math.isnan(x) or x <= n["threshold"]) else n["right"]
            raw[r] += nodes[i]["leaf"]
    if model["link"] == "logistic":
        return 1.0 / (1.0 + np.exp(-raw))
    return raw


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# --------------------------------------------------------------------------------------------
# Metrics

def threshold_at_fpr(scores_human, fpr):
    """Smallest threshold t with share(human scores >= t) <= fpr (flag = score >= t)."""
    s = np.sort(scores_human)[::-1]
    k = int(math.floor(fpr * len(s)))
    if k >= len(s):
        return float(s[-1])
    # flagging the k highest keeps FPR <= fpr; the threshold sits just above the (k+1)-th
    return float(np.nextafter(s[k], np.inf))


def client_rates(ds, flagged, mask, key):
    """Share of distinct keys (clients or actors) within mask with at least one flagged request."""
    keys = key[mask]
    f = flagged[mask]
    if len(keys) == 0:
        return float("nan"), 0
    uniq, inv = np.unique(keys, return_inverse=True)
    hit = np.zeros(len(uniq), dtype=bool)
    np.logical_or.at(hit, inv, f)
    return float(hit.mean()), len(uniq)


def report_at(ds, scores, thr, title, out):
    flagged = scores >= thr
    g = ds.group()
    human = ds.labels == "human"
    res = {"threshold": thr,
           "human_fpr_requests": float(flagged[human].mean()),
           "human_fpr_clients": client_rates(ds, flagged, human, ds.clients)[0],
           "human_fpr_actors": client_rates(ds, flagged, human, ds.actors)[0],
           "recall": {}}
    for k in sorted(set(g.tolist())):
        m = g == k
        rc, nc = client_rates(ds, flagged, m, ds.clients)
        ra, na = client_rates(ds, flagged, m, ds.actors)
        res["recall"][k] = {"requests": float(flagged[m].mean()), "n_requests": int(m.sum()),
                            "clients": rc, "n_clients": nc, "actors": ra, "n_actors": na}
    out.append("%s  (threshold %.4f)" % (title, thr))
    out.append("  human FPR: requests %.4f%%, client keys %.3f%%, actors %.3f%%" % (
        100 * res["human_fpr_requests"], 100 * res["human_fpr_clients"], 100 * res["human_fpr_actors"]))
    out.append("  %-22s %9s %8s %9s %8s %9s %7s" % ("class", "req.rec", "n_req", "client.rec", "n_cli",
                                                   "actor.rec", "n_act"))
    for k, v in res["recall"].items():
        out.append("  %-22s %8.2f%% %8d %9.2f%% %8d %8.2f%% %7d" % (
            k, 100 * v["requests"], v["n_requests"], 100 * v["clients"], v["n_clients"],
            100 * v["actors"], v["n_actors"]))
    return res


# --------------------------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True, help="simulated run to train on (seed A)")
    p.add_argument("--eval", required=True, help="simulated run to evaluate on (seed B)")
    p.add_argument("--out", default=os.path.join(REPO, "classifier", "models"))
    p.add_argument("--extractor", help="crawlgate-features binary (default: build*/tools/)")
    p.add_argument("--student-trees", type=int, default=100)
    p.add_argument("--student-rows", type=int, default=60000)
    p.add_argument("--student-depth", type=int, default=4)
    p.add_argument("--seed-model", type=int, default=1)
    p.add_argument("--golden-rows", type=int, default=200)
    p.add_argument("--no-holdout", action="store_true", help="skip the held-out-variant experiment")
    p.add_argument("--report", help="write the figures as JSON here")
    args = p.parse_args(argv)

    t0 = time.time()
    train = load(args.train, args.extractor)
    ev = load(args.eval, args.extractor)
    if ev.names != train.names:
        sys.exit("train_model: feature columns differ between runs")
    names = train.names
    out = ["features (%d): %s" % (len(names), " ".join(names)),
           "train %s: %d rows, eval %s: %d rows" % (args.train, len(train.y), args.eval, len(ev.y))]

    # fit / calibration split of the training run, by address block (no key on both sides)
    blocks = np.array([block_of(c) for c in train.clients])
    ub, inv = np.unique(blocks, return_inverse=True)
    rng = np.random.default_rng(args.seed_model)
    cal_block = rng.random(len(ub)) < 0.25
    cal = cal_block[inv]
    fit, calib = train.subset(~cal), train.subset(cal)

    t1 = time.time()
    teacher = fit_teacher(fit, args.seed_model)
    t_fit = teacher_logit(teacher, fit.X)
    student = fit_student(fit, t_fit, args)
    t2 = time.time()

    def student_scores(X):
        return sigmoid(student.predict(X))

    # thresholds at 0.1% human request FPR, calibrated on the held-out blocks of the training run
    cal_h = calib.labels == "human"
    thr_t = threshold_at_fpr(sigmoid(teacher_logit(teacher, calib.X))[cal_h], FPR_TARGET)
    thr_s = threshold_at_fpr(student_scores(calib.X)[cal_h], FPR_TARGET)
    thr_s_01 = threshold_at_fpr(student_scores(calib.X)[cal_h], 0.01)

    te = sigmoid(teacher_logit(teacher, ev.X))
    se = student_scores(ev.X)
    auc_t = roc_auc_score(ev.y, te)
    auc_s = roc_auc_score(ev.y, se)
    hs = (ev.labels == "human") | (ev.labels == "stealth")
    auc_t_hs = roc_auc_score(ev.y[hs], te[hs])
    auc_s_hs = roc_auc_score(ev.y[hs], se[hs])
    agree_op = float(((te >= thr_t) == (se >= thr_s)).mean())
    agree_05 = float(((te >= 0.5) == (se >= 0.5)).mean())
    corr = float(np.corrcoef(teacher_logit(teacher, ev.X), student.predict(ev.X))[0, 1])
    out.append("")
    out.append("AUC (eval seed, all non-human vs human): teacher %.5f, student %.5f (diff %.5f)" % (
        auc_t, auc_s, auc_t - auc_s))
    out.append("AUC (eval seed, stealth vs human):       teacher %.5f, student %.5f" % (auc_t_hs, auc_s_hs))
    out.append("student/teacher agreement: %.4f at the operating thresholds, %.4f at 0.5; logit corr %.4f" % (
        agree_op, agree_05, corr))
    out.append("")
    res = {"auc": {"teacher": auc_t, "student": auc_s, "teacher_stealth_vs_human": auc_t_hs,
                   "student_stealth_vs_human": auc_s_hs},
           "agreement": {"operating": agree_op, "at_0.5": agree_05, "logit_corr": corr}}
    res["teacher_calibrated"] = report_at(ev, te, thr_t, "TEACHER on eval seed, threshold calibrated on train-seed blocks", out)
    out.append("")
    res["student_calibrated"] = report_at(ev, se, thr_s, "STUDENT on eval seed, threshold calibrated on train-seed blocks (shipped)", out)
    out.append("")
    thr_eval = threshold_at_fpr(se[ev.labels == "human"], FPR_TARGET)
    res["student_at_eval_fpr"] = report_at(ev, se, thr_eval, "STUDENT on eval seed at exactly 0.1% human request FPR (oracle threshold)", out)

    # held-out variants: teacher trained without one stealth variant, tested on it
    if not args.no_holdout:
        out.append("")
        out.append("HELD-OUT VARIANTS (teacher retrained without the variant; eval seed; oracle 0.1% FPR threshold)")
        res["holdout"] = {}
        for v in STEALTH_VARIANTS:
            keep = ~((fit.labels == "stealth") & (fit.variants == v))
            tv = fit_teacher(fit.subset(keep), args.seed_model, 150)
            sv = sigmoid(teacher_logit(tv, ev.X))
            thr = threshold_at_fpr(sv[ev.labels == "human"], FPR_TARGET)
            m = (ev.labels == "stealth") & (ev.variants == v)
            flagged = sv >= thr
            rc, nc = client_rates(ev, flagged, m, ev.clients)
            ra, na = client_rates(ev, flagged, m, ev.actors)
            rr = float(flagged[m].mean())
            # the same variant when it was in the training data, for comparison
            full = float((te >= threshold_at_fpr(te[ev.labels == "human"], FPR_TARGET))[m].mean())
            res["holdout"][v] = {"requests": rr, "clients": rc, "actors": ra, "with_variant_requests": full}
            out.append("  without %-13s recall on it: requests %6.2f%% clients %6.2f%% (n=%d) actors %6.2f%% (n=%d)  [trained with it: requests %6.2f%%]" % (
                v, 100 * rr, 100 * rc, nc, 100 * ra, na, 100 * full))
    t3 = time.time()

    # export
    model = export_student(student, names, {
        "teacher": {"kind": "HistGradientBoostingClassifier", "auc": round(auc_t, 6)},
        "student": {"kind": "GradientBoostingRegressor on teacher logits", "auc": round(auc_s, 6),
                    "agreement": round(agree_op, 6), "trees": args.student_trees,
                    "max_depth": args.student_depth},
        "thresholds_hint": {"fpr_0.001": thr_s, "fpr_0.01": thr_s_01},
        "training": {"train": os.path.basename(os.path.normpath(args.train)),
                     "eval": os.path.basename(os.path.normpath(args.eval)),
                     "target": "non-human vs human, per request"}})
    # the exported trees must reproduce sklearn exactly (float32-representable inputs)
    Xc = ev.X[:2000].astype(np.float32).astype(np.float64)
    d = np.abs(score_model(model, Xc) - student_scores(Xc)).max()
    if d > 1e-9:
        sys.exit("train_model: exported model disagrees with sklearn by %g" % d)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "crawlgate-model.json"), "w") as f:
        json.dump(model, f, indent=None, separators=(",", ":"))
        f.write("\n")
    write_golden(os.path.join(args.out, "golden.csv"), ev, model, args.golden_rows)
    t4 = time.time()
    out.append("")
    out.append("timings: load %.1fs, fit teacher+student %.1fs, evaluation+holdout %.1fs, export %.1fs" % (
        t1 - t0, t2 - t1, t3 - t2, t4 - t3))
    out.append("wrote %s/crawlgate-model.json (%d trees, %d nodes) and golden.csv" % (
        args.out, len(model["trees"]), sum(len(t["nodes"]) for t in model["trees"])))
    print("\n".join(out))
    if args.report:
        res["timings_s"] = {"load": t1 - t0, "fit": t2 - t1, "eval": t3 - t2, "export": t4 - t3}
        with open(args.report, "w") as f:
            json.dump(res, f, indent=1)


def write_golden(path, ds, model, n):
    """About n rows stratified over label/variant, plus edge rows; score = the student's."""
    rng = np.random.default_rng(12345)
    g = ds.group()
    keys = sorted(set(g.tolist()))
    per = max(1, n // len(keys))
    idx = []
    for k in keys:
        m = np.flatnonzero(g == k)
        idx += sorted(rng.choice(m, min(per, len(m)), replace=False).tolist())
    X = ds.X[idx]
    scores = score_model(model, X)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(list(model["features"]) + ["score"])
        for row, s in zip(X, scores):
            w.writerow([repr(float(x)) for x in row] + [repr(float(s))])


if __name__ == "__main__":
    main()
