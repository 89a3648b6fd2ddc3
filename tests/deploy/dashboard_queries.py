#!/usr/bin/python3
"""Extracts the PromQL of every panel target of a Grafana dashboard, and checks them.

  dashboard_queries.py [--dashboard FILE] --list [--raw]
      one expression per line (Grafana variables substituted so Prometheus can run it;
      --raw: verbatim), as "panel title<TAB>expr" with --titles
  dashboard_queries.py [--dashboard FILE] --check URL [--allow-empty REGEX]
      runs each expression at URL/api/v1/query (an instant query) and fails, naming the panel,
      when Prometheus refuses it or the result is empty
  dashboard_queries.py [--dashboard FILE] --check-names METRICS_MD
      fails when an expression uses a crawlgate_* metric that docs/metrics.md does not list
  dashboard_queries.py [--dashboard FILE] --lint
      structure: JSON, unique panel ids, a datasource and an expr on every target, grid inside 24

The default dashboard is deploy/grafana/crawlgate.json of this repository. Grafana's variables
become: $__rate_interval and $__interval -> --rate-interval (1m), $__range -> --range (5m),
template variables ($job, ${instance}, ...) -> their "allValue" (".*"), or --var NAME=VALUE.
Standard library only (runs with /usr/bin/python3).
"""
import argparse
import json
import os
import re
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DASHBOARD = os.path.normpath(os.path.join(HERE, "..", "..", "deploy", "grafana", "crawlgate.json"))


def panels_of(dashboard):
    """Every non-row panel, rows' nested (collapsed) panels included, in dashboard order."""
    out = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def queries(dashboard):
    """(panel title, refId, raw expr) for every target with an expr."""
    out = []
    for panel in panels_of(dashboard):
        for target in panel.get("targets", []):
            if target.get("hide"):
                continue
            expr = target.get("expr")
            if expr:
                out.append((panel.get("title", "?"), target.get("refId", "?"), expr))
    return out


def substitute(expr, dashboard, rate_interval, range_, overrides):
    values = {"__rate_interval": rate_interval, "__interval": rate_interval, "__range": range_,
              "__range_s": str(int(duration_seconds(range_))), "__interval_ms": str(int(duration_seconds(rate_interval) * 1000))}
    for var in dashboard.get("templating", {}).get("list", []):
        values.setdefault(var["name"], var.get("allValue") or ".*")
    values.update(overrides)

    def repl(match):
        name = match.group(1) or match.group(2)
        if name not in values:
            raise SystemExit(f"unknown Grafana variable ${name} in: {expr}")
        return values[name]

    expr = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)
    return " ".join(expr.split())


def duration_seconds(text):
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text)
    if not match:
        raise SystemExit(f"bad duration {text!r} (e.g. 30s, 1m, 5m)")
    return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def metric_names(expr):
    """crawlgate_* series names an expression uses, histogram suffixes folded to the family."""
    names = set()
    for name in re.findall(r"\bcrawlgate_[a-z0-9_]+", expr):
        names.add(re.sub(r"_(bucket|sum|count)$", "", name))
    return names


def documented_metrics(metrics_md):
    text = open(metrics_md, encoding="utf-8").read()
    return set(re.findall(r"^\|\s*`(crawlgate_[a-z0-9_]+)`", text, re.M))


def lint(dashboard):
    errors = []
    ids = {}
    for panel in dashboard.get("panels", []) + [p for r in dashboard.get("panels", []) for p in r.get("panels", [])]:
        pid = panel.get("id")
        if pid in ids:
            errors.append(f"panel id {pid} used by {ids[pid]!r} and {panel.get('title')!r}")
        ids[pid] = panel.get("title")
        grid = panel.get("gridPos", {})
        if not grid or grid.get("x", 0) + grid.get("w", 0) > 24:
            errors.append(f"panel {panel.get('title')!r}: gridPos missing or wider than 24")
        if panel.get("type") == "row":
            continue
        if not panel.get("title"):
            errors.append(f"panel id {pid} has no title")
        targets = panel.get("targets", [])
        if not targets:
            errors.append(f"panel {panel.get('title')!r} has no targets")
        for target in targets:
            if not target.get("expr"):
                errors.append(f"panel {panel.get('title')!r} target {target.get('refId')} has no expr")
            if not (target.get("datasource") or panel.get("datasource")):
                errors.append(f"panel {panel.get('title')!r} target {target.get('refId')} has no datasource")
    if not dashboard.get("uid") or not dashboard.get("title"):
        errors.append("dashboard has no uid or title")
    return errors


def query(url, expr, timeout):
    full = url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(full, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:  # 400/422: Prometheus explains in the body
        try:
            body = json.load(error)
        except ValueError:
            return None, f"HTTP {error.code}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        return None, str(error)
    if body.get("status") != "success":
        return None, f"{body.get('errorType')}: {body.get('error')}"
    return body["data"]["result"], None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dashboard", default=DEFAULT_DASHBOARD)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--list", action="store_true")
    mode.add_argument("--check", metavar="URL")
    mode.add_argument("--check-names", metavar="METRICS_MD")
    mode.add_argument("--lint", action="store_true")
    parser.add_argument("--raw", action="store_true", help="--list: print expressions verbatim")
    parser.add_argument("--titles", action="store_true", help="--list: prefix each line with the panel title and a tab")
    parser.add_argument("--rate-interval", default="1m")
    parser.add_argument("--range", default="5m")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--allow-empty", metavar="REGEX", help="--check: panels whose title matches may return no data")
    parser.add_argument("--timeout", type=float, default=10)
    args = parser.parse_args()

    with open(args.dashboard, encoding="utf-8") as f:
        dashboard = json.load(f)
    overrides = dict(v.split("=", 1) for v in args.var)
    found = queries(dashboard)
    if not found:
        print(f"{args.dashboard}: no panel targets with an expr", file=sys.stderr)
        return 1

    def runnable(expr):
        return substitute(expr, dashboard, args.rate_interval, args.range, overrides)

    if args.list:
        for title, _, expr in found:
            line = " ".join(expr.split()) if args.raw else runnable(expr)
            print(f"{title}\t{line}" if args.titles else line)
        return 0

    if args.lint:
        errors = lint(dashboard)
        for _, _, expr in found:
            runnable(expr)  # unknown variables abort
        for error in errors:
            print(f"{args.dashboard}: {error}", file=sys.stderr)
        print(f"{args.dashboard}: {len(panels_of(dashboard))} panels, {len(found)} queries, "
              f"{'OK' if not errors else f'{len(errors)} error(s)'}")
        return 1 if errors else 0

    if args.check_names:
        documented = documented_metrics(args.check_names)
        if not documented:
            print(f"{args.check_names}: no metric table found", file=sys.stderr)
            return 1
        bad = [(title, name) for title, _, expr in found for name in sorted(metric_names(expr)) if name not in documented]
        for title, name in bad:
            print(f"panel {title!r}: {name} is not in {args.check_names}", file=sys.stderr)
        used = set().union(*(metric_names(e) for _, _, e in found))
        print(f"{len(used)} crawlgate metrics used, {len(documented)} documented, "
              f"not on the dashboard: {', '.join(sorted(documented - used)) or 'none'}")
        return 1 if bad else 0

    allow = re.compile(args.allow_empty) if args.allow_empty else None
    failures = 0
    for title, ref, expr in found:
        promql = runnable(expr)
        result, error = query(args.check, promql, args.timeout)
        if error is not None:
            print(f"FAIL panel {title!r} ({ref}): query error: {error}\n     {promql}")
            failures += 1
        elif not result:
            if allow and allow.search(title):
                print(f"ok   panel {title!r} ({ref}): empty (allowed)")
            else:
                print(f"FAIL panel {title!r} ({ref}): no data\n     {promql}")
                failures += 1
        else:
            print(f"ok   panel {title!r} ({ref}): {len(result)} series")
    print(f"{len(found) - failures}/{len(found)} queries returned data")
    return 1 if failures else 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # --list | head
    sys.exit(main())
