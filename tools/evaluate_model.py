#!/usr/bin/python3
"""Evaluates crawlgate's behavioural detection end to end on a fresh simulated run.

Where train_model.py measures the model it has just trained (train on seed A, evaluate on seed B,
hold out whole stealth variants), this script measures what is deployed: it simulates a run with
a seed of your choice (tools/simulate_traffic.py), sends the log through `crawlgate replay` with a
config (default: the embedded one, i.e. the committed model, thresholds and limits) and joins the
per-line decisions with the simulator's labels. Everything scored and decided here is C++: the
proxy's own stages in the log's own time.

Prints, per population: requests, share scored, share the model flagged (class from a behaviour
threshold), share the proxy would have refused (deny/throttle/tarpit), actors refused at least
once and the median request index of their first refusal; the human false-positive rate (requests,
client addresses, people); and stealth recall at a 0.1% human request false-positive rate.

    /usr/bin/python3 tools/evaluate_model.py --seed 55 --minutes 60
    /usr/bin/python3 tools/evaluate_model.py --sim sim/22 --config my.yaml --json eval.json
"""
import argparse
import collections
import csv
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def find_binary(given):
    if given:
        return given
    found = sorted(glob.glob(os.path.join(REPO, "build*", "app", "crawlgate")),
                   key=os.path.getmtime, reverse=True)
    if not found:
        sys.exit("evaluate_model: no crawlgate binary under build*/app/; pass --crawlgate")
    return found[0]


def load(sim_dir, decisions_path):
    labels = {}
    with open(os.path.join(sim_dir, "labels.csv"), newline="") as f:
        for row in csv.DictReader(f):
            labels[int(row["line"])] = row
    ips = {}
    with open(os.path.join(sim_dir, "access.jsonl")) as f:
        for n, line in enumerate(f, 1):
            ips[n] = json.loads(line)["ip"]
    rows = []
    with open(decisions_path) as f:
        for line in f:
            n, cls, action, score, rule = line.rstrip("\n").split("\t")
            n = int(n)
            lab = labels[n]
            rows.append({
                "line": n, "class": cls, "action": action,
                "score": None if score == "-" else float(score), "rule": rule,
                "actor": lab["client"], "ip": ips[n],
                "population": lab["label"] + ("/" + lab["variant"] if lab["variant"] else ""),
            })
    return rows


def quantile_threshold(scores, fpr):
    """The smallest threshold flagging at most `fpr` of these (human) scores."""
    ordered = sorted(scores, reverse=True)
    allowed = int(fpr * len(ordered))
    return ordered[allowed] + 1e-12 if allowed < len(ordered) else 0.0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=55, help="simulation seed (default 55)")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--sim", help="use this simulated run instead of simulating one")
    p.add_argument("--config", help="crawlgate config (default: the embedded one)")
    p.add_argument("--crawlgate", help="the crawlgate binary (default: newest build*/app/crawlgate)")
    p.add_argument("--json", help="write the figures here as JSON")
    args = p.parse_args(argv)

    binary = find_binary(args.crawlgate)
    work = tempfile.mkdtemp(prefix="crawlgate-eval-")
    sim = args.sim
    if not sim:
        sim = os.path.join(work, "sim")
        subprocess.run([sys.executable, os.path.join(REPO, "tools", "simulate_traffic.py"),
                        "--seed", str(args.seed), "--minutes", str(args.minutes), "--out", sim],
                       check=True, stdout=subprocess.DEVNULL)
    decisions = os.path.join(work, "decisions.tsv")
    command = [binary, "replay", os.path.join(sim, "access.jsonl"), "--decisions", decisions,
               "--no-progress"]
    if args.config:
        command += ["--config", args.config]
    replay = subprocess.run(command, capture_output=True, text=True)
    if replay.returncode != 0:
        sys.exit("evaluate_model: crawlgate replay failed:\n" + replay.stdout + replay.stderr)
    rows = load(sim, decisions)

    flagged = lambda r: r["rule"] in ("behaviour", "shadow:behaviour")
    refused = lambda r: r["action"] in ("deny", "throttle", "tarpit")
    per_pop = collections.defaultdict(list)
    for r in rows:
        per_pop[r["population"]].append(r)

    report = {"sim": sim, "config": args.config or "(embedded default config)", "populations": {}}
    print(f"simulated run: {sim}; config: {report['config']}; {len(rows)} requests")
    print(f"{'population':<24} {'requests':>8} {'scored':>7} {'flagged':>8} {'refused':>8} "
          f"{'actors':>7} {'refused':>8} {'1st refusal':>11}")
    for pop in sorted(per_pop):
        rs = per_pop[pop]
        actors = collections.OrderedDict()
        for r in rs:
            actors.setdefault(r["actor"], []).append(r)
        firsts = []
        for actor_rows in actors.values():
            for i, r in enumerate(actor_rows, 1):
                if refused(r):
                    firsts.append(i)
                    break
        figures = {
            "requests": len(rs),
            "scored": sum(r["score"] is not None for r in rs) / len(rs),
            "flagged": sum(map(flagged, rs)) / len(rs),
            "refused": sum(map(refused, rs)) / len(rs),
            "actors": len(actors),
            "actors_refused": len(firsts),
            "median_first_refusal": statistics.median(firsts) if firsts else None,
        }
        report["populations"][pop] = figures
        first = "-" if not firsts else "%g" % figures["median_first_refusal"]
        print(f"{pop:<24} {len(rs):>8} {figures['scored']:>7.1%} {figures['flagged']:>8.2%} "
              f"{figures['refused']:>8.2%} {len(actors):>7} {len(firsts):>8} {first:>11}")

    humans = per_pop.get("human", [])
    if humans:
        ip_flagged, ip_all, people_flagged, people_all = set(), set(), set(), set()
        for r in humans:
            ip_all.add(r["ip"])
            people_all.add(r["actor"])
            if flagged(r):
                ip_flagged.add(r["ip"])
                people_flagged.add(r["actor"])
        fp = {
            "requests_flagged": sum(map(flagged, humans)) / len(humans),
            "addresses_flagged": len(ip_flagged) / len(ip_all),
            "people_flagged": len(people_flagged) / len(people_all),
            "requests_refused": sum(map(refused, humans)) / len(humans),
        }
        report["human_false_positives"] = fp
        print(f"\nhumans: {fp['requests_flagged']:.3%} of requests flagged, "
              f"{fp['addresses_flagged']:.2%} of addresses, {fp['people_flagged']:.2%} of people; "
              f"{fp['requests_refused']:.3%} of requests refused")

        human_scores = [r["score"] for r in humans if r["score"] is not None]
        if human_scores:
            threshold = quantile_threshold(human_scores, 0.001)
            report["threshold_at_0.1%_fpr"] = threshold
            print(f"\nat 0.1% human request FPR (threshold {threshold:.4f}), stealth recall:")
            print(f"{'variant':<24} {'requests':>9} {'addresses':>10} {'actors':>7}")
            recall = {}
            for pop in sorted(p for p in per_pop if p.startswith("stealth/")):
                rs = [r for r in per_pop[pop] if r["score"] is not None]
                if not rs:
                    continue
                hit = [r for r in rs if r["score"] >= threshold]
                ips = {r["ip"] for r in rs}
                actors = {r["actor"] for r in rs}
                figures = {"requests": len(hit) / len(rs),
                           "addresses": len({r["ip"] for r in hit}) / len(ips),
                           "actors": len({r["actor"] for r in hit}) / len(actors)}
                recall[pop] = figures
                print(f"{pop:<24} {figures['requests']:>9.1%} {figures['addresses']:>10.1%} "
                      f"{figures['actors']:>7.1%}")
            report["stealth_recall_at_0.1%_fpr"] = recall
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, sort_keys=True)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
