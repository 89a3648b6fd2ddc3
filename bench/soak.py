#!/usr/bin/python3
"""Helper of bench/soak.sh (standard library only): `load` runs the non-browser clients, `report`
prints the final table, writes the JSON file and decides pass/fail.

`load` roles, in one asyncio process, each from its own loopback source addresses so that
crawlgate keys them apart from the browser load (wrk, from 127.0.0.1):

  crawler   declared AI crawlers (GPTBot, ClaudeBot: denied; PerplexityBot: throttled), keep-alive,
            paced, from 127.0.1.N
  stealth   browser User-Agent from 127.0.2.N, which the soak config puts in a throttled class;
            they hammer (paced far above their limit)
  slowloris sends a request head one byte per 0.5 s; crawlgate must answer 408 and close within
            timeouts.header_read, from 127.0.3.N
  slowpost  sends a full head, then a body at 64 B/s, far below limits.min_body_rate; crawlgate
            must cut it off once timeouts.body_read has passed, from 127.0.4.N

Every loop is bounded by a deadline and a count. Statuses and outcomes are written as JSON to
--out; nothing is printed unless something goes wrong.
"""

import argparse
import asyncio
import collections
import json
import sys
import time

BROWSER_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/128.0.0.0 Safari/537.36")
CRAWLER_UAS = [
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
    "+https://openai.com/gptbot)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; "
    "+claudebot@anthropic.com)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; PerplexityBot/1.0; "
    "+https://perplexity.ai/perplexitybot)",
]
CRAWLER_NAMES = ["GPTBot", "ClaudeBot", "PerplexityBot"]
PATHS = ["/wiki/Main_Page", "/wiki/Web_crawler", "/wiki/HTTP", "/wiki/Rate_limiting",
         "/wiki/Nginx", "/wiki/Epoll", "/wiki/Throughput", "/wiki/IPv6"]
REQUEST_TIMEOUT = 10.0


class HttpError(Exception):
    pass


async def read_response(reader, method="GET"):
    """Reads one response; returns (status, keep_alive)."""
    line = await reader.readline()
    if not line:
        raise HttpError("eof")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise HttpError("bad status line %r" % line[:60])
    status = int(parts[1])
    headers = {}
    while True:
        h = await reader.readline()
        if not h:
            raise HttpError("eof in head")
        if h in (b"\r\n", b"\n"):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    keep = headers.get("connection", "").lower() != "close" and parts[0] == b"HTTP/1.1"
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                break
            await reader.readexactly(size + 2)
    elif "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    else:
        await reader.read()  # until EOF
        keep = False
    return status, keep


async def close(writer):
    if writer is None:
        return
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 2)
    except (OSError, asyncio.TimeoutError):
        pass


async def paced_client(role, host, port, src, uas, names, rate, deadline, max_requests, stats):
    """Keep-alive requests at `rate` per second, counted per (name, status)."""
    interval = 1.0 / rate
    next_t = time.monotonic()
    reader = writer = None
    for n in range(max_requests):
        if time.monotonic() >= deadline:
            break
        k = n % len(uas)
        key = names[k]
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, local_addr=(src, 0)), REQUEST_TIMEOUT)
                stats[role]["connections"] += 1
            path = PATHS[n % len(PATHS)]
            writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {uas[k]}\r\n"
                          "Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n"
                          "Accept-Language: en-US,en;q=0.9\r\n\r\n").encode())
            await writer.drain()
            status, keep = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
            stats[role][f"{key} {status}"] += 1
            if not keep:
                await close(writer)
                reader = writer = None
        except (OSError, HttpError, ValueError, asyncio.IncompleteReadError,
                asyncio.TimeoutError) as e:
            stats[role][f"{key} error"] += 1
            stats["error_samples"].setdefault(role, repr(e)[:120])
            await close(writer)
            reader = writer = None
        next_t += interval
        now = time.monotonic()
        if next_t < now - 1.0:
            next_t = now  # fell behind by over a second: do not burst to catch up
        await asyncio.sleep(max(0.0, next_t - now))
    await close(writer)


async def slow_client(kind, host, port, src, header_timeout, body_timeout, grace, stats):
    """One slowloris or slow-POST connection; records whether and when crawlgate cut it off."""
    t0 = time.monotonic()
    if kind == "slowloris":
        head = (f"GET /wiki/Main_Page HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"User-Agent: {BROWSER_UA}\r\n").encode()
        trickle = b"X-Slow-Header-" + b"a" * 4000  # one byte per tick, never finished
        tick, chunk = 0.5, 1
        give_up = t0 + header_timeout + grace
    else:
        head = (f"POST /upload HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {BROWSER_UA}\r\n"
                "Content-Type: application/octet-stream\r\nContent-Length: 65536\r\n\r\n").encode()
        trickle = b"b" * 65536  # 16 bytes per 0.25 s = 64 B/s, far below min_body_rate
        tick, chunk = 0.25, 16
        give_up = t0 + body_timeout + grace
    s = stats[kind]
    s["started"] += 1
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(src, 0)), REQUEST_TIMEOUT)
    except (OSError, asyncio.TimeoutError) as e:
        s["connect_error"] += 1
        stats["error_samples"].setdefault(kind, repr(e)[:120])
        return
    writer.write(head)
    received = b""
    outcome = None
    pos = 0
    read_task = asyncio.ensure_future(reader.read(4096))
    try:
        await writer.drain()
        while time.monotonic() < give_up:
            done, _ = await asyncio.wait({read_task}, timeout=tick)
            if read_task in done:
                try:
                    data = read_task.result()
                except OSError:
                    outcome = "reset"
                    break
                if not data:
                    outcome = "closed"
                    break
                received += data
                read_task = asyncio.ensure_future(reader.read(4096))
                continue
            if pos < len(trickle):
                try:
                    writer.write(trickle[pos:pos + chunk])
                    await writer.drain()
                except OSError:
                    outcome = "reset"
                    break
                pos += chunk
    finally:
        if not read_task.done():
            read_task.cancel()
            try:
                await read_task
            except (asyncio.CancelledError, OSError):
                pass
        await close(writer)
    if outcome is None:
        s["not_cut"] += 1
        return
    s["cut"] += 1
    status = received.split(b" ", 2)[1].decode("latin-1", "replace") if received.startswith(
        b"HTTP/1.") else ("none" if not received else "garbled")
    s[f"answer {status}"] += 1
    elapsed = time.monotonic() - t0
    s["cut_after_max_ms"] = max(s["cut_after_max_ms"], int(elapsed * 1000))
    s["cut_after_sum_ms"] += int(elapsed * 1000)


async def slow_spawner(args, deadline, stats):
    tasks = []
    count = int(args.duration / args.slow_every) + 1
    next_t = time.monotonic()
    for i in range(count):
        if time.monotonic() >= deadline:
            break
        # never more than slow_max at once
        tasks = [t for t in tasks if not t.done()]
        if len(tasks) < args.slow_max:
            kind = "slowloris" if i % 2 == 0 else "slowpost"
            src = f"127.0.{3 if kind == 'slowloris' else 4}.{1 + (i // 2) % 200}"
            tasks.append(asyncio.ensure_future(slow_client(
                kind, args.host, args.port, src, args.header_timeout, args.body_timeout,
                args.grace, stats)))
        next_t += args.slow_every
        await asyncio.sleep(max(0.0, next_t - time.monotonic()))
    if tasks:
        await asyncio.gather(*tasks)


async def main_async(args):
    stats = collections.defaultdict(collections.Counter)
    stats["error_samples"] = {}
    deadline = time.monotonic() + args.duration
    jobs = []
    if args.crawlers > 0:
        per = args.crawler_rate / args.crawlers
        for i in range(args.crawlers):
            jobs.append(paced_client("crawler", args.host, args.port, f"127.0.1.{i + 1}",
                                     CRAWLER_UAS, CRAWLER_NAMES, per, deadline,
                                     int(per * args.duration) + 10, stats))
    if args.stealth > 0:
        per = args.stealth_rate / args.stealth
        for i in range(args.stealth):
            jobs.append(paced_client("stealth", args.host, args.port, f"127.0.2.{i + 1}",
                                     [BROWSER_UA], ["stealth"], per, deadline,
                                     int(per * args.duration) + 10, stats))
    if args.slow_every > 0:
        jobs.append(slow_spawner(args, deadline, stats))
    await asyncio.gather(*jobs)
    return stats


def add_load_args(p):
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--crawlers", type=int, default=4, help="crawler connections")
    p.add_argument("--crawler-rate", type=float, default=60, help="crawler requests/s in total")
    p.add_argument("--stealth", type=int, default=4, help="stealth connections (addresses)")
    p.add_argument("--stealth-rate", type=float, default=200, help="stealth requests/s in total")
    p.add_argument("--slow-every", type=float, default=1.0,
                   help="start a slow client every S seconds (alternating kinds); 0 = none")
    p.add_argument("--slow-max", type=int, default=16, help="slow clients open at most at once")
    p.add_argument("--header-timeout", type=float, required=True, help="crawlgate header_read")
    p.add_argument("--body-timeout", type=float, required=True,
                   help="crawlgate body_read (the slow POST is cut at the first read after it)")
    p.add_argument("--grace", type=float, default=5.0,
                   help="seconds past the timeout before a slow client counts as not cut off")
    p.add_argument("--out", required=True)


def cmd_load(p, args):
    if not (0 < args.duration <= 7200):
        p.error("--duration must be in (0, 7200]")
    if not (0 <= args.crawlers <= 200 and 0 <= args.stealth <= 200):
        p.error("--crawlers/--stealth must be in 0..200")
    if (args.crawlers and args.crawler_rate <= 0) or (args.stealth and args.stealth_rate <= 0):
        p.error("rates must be > 0")
    if args.slow_every and args.slow_every < 0.05:
        p.error("--slow-every must be 0 or >= 0.05")
    t0 = time.monotonic()
    stats = asyncio.run(main_async(args))
    out = {k: dict(v) for k, v in stats.items()}
    out["elapsed_s"] = round(time.monotonic() - t0, 2)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    return 0


# ----------------------------------------------------------------------------------------------
# report: the final table, the JSON file and the verdict, from the facts soak.sh gathered.

def read_facts(path):
    facts = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                facts[key] = value
    return facts


def num(facts, key, default=0):
    v = facts.get(key, "")
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return default


def read_reloads(path):
    """Lines 'INDEX HOW EXPECT GOT HTTP_CODE MS' written by soak.sh's reloader."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 6:
                    rows.append({"index": int(parts[0]), "how": parts[1], "expect": parts[2],
                                 "got": parts[3], "http": parts[4], "ms": int(parts[5])})
    except FileNotFoundError:
        pass
    return rows


def mib(kb):
    return f"{kb / 1024:.1f} MiB"


def cmd_report(args):
    facts = read_facts(args.facts)
    try:
        with open(args.clients) as f:
            clients = json.load(f)
    except (OSError, ValueError):
        clients = {}
    reloads = read_reloads(args.reloads)
    fail = []

    # Normal clients (wrk).
    n_req = num(facts, "normal_requests")
    n_secs = num(facts, "normal_duration_us") / 1e6
    n_rps = n_req / n_secs if n_secs > 0 else 0.0
    kinds = ["connect", "read", "write", "timeout", "status"]
    n_err = {k: num(facts, f"normal_err_{k}") for k in kinds}
    n_err_total = sum(n_err.values())
    if "normal_requests" not in facts:
        fail.append("normal clients: wrk gave no result (see its output above)")
    elif n_req == 0:
        fail.append("normal clients: no request completed")
    if n_err_total > 0:
        fail.append("normal clients got %d errors (%s)" % (
            n_err_total, ", ".join(f"{k} {v}" for k, v in n_err.items() if v)))

    # Crawlers and stealth clients: answers by status (not errors).
    def by_status(role):
        out = collections.defaultdict(dict)
        for key, count in clients.get(role, {}).items():
            if key == "connections":
                continue
            name, _, status = key.rpartition(" ")
            out[name][status] = count
        return {name: dict(sorted(v.items())) for name, v in sorted(out.items())}
    crawlers = by_status("crawler")
    stealth = by_status("stealth").get("stealth", {})

    # Slow clients.
    slow = {}
    for kind in ("slowloris", "slowpost"):
        s = clients.get(kind, {})
        started, cut = s.get("started", 0), s.get("cut", 0)
        answers = {k.split(" ", 1)[1]: v for k, v in s.items() if k.startswith("answer ")}
        slow[kind] = {"started": started, "cut": cut, "not_cut": s.get("not_cut", 0),
                      "connect_error": s.get("connect_error", 0), "answers": answers,
                      "cut_after_max_s": round(s.get("cut_after_max_ms", 0) / 1000, 2),
                      "cut_after_avg_s": round(s.get("cut_after_sum_ms", 0) / 1000 / cut, 2)
                      if cut else None}
        if s.get("not_cut", 0) or s.get("connect_error", 0):
            fail.append(f"{kind}: {s.get('not_cut', 0)} of {started} not cut off in time, "
                        f"{s.get('connect_error', 0)} could not connect")
        if not clients:
            continue
        if started == 0:
            fail.append(f"{kind}: none started")
    if not clients:
        fail.append("the client helper gave no result (see its errors above)")

    # Reloads: what the reloader saw against what it expected, and crawlgate's own counters.
    exp_ok = sum(1 for r in reloads if r["expect"] == "ok")
    exp_refused = sum(1 for r in reloads if r["expect"] == "refused")
    wrong = [r for r in reloads if r["got"] != r["expect"] or
             (r["how"] == "post" and r["http"] != ("200" if r["expect"] == "ok" else "422"))]
    # crawlgate_config_reloads_total counts the initial load too: differences from before the load.
    m_ok = num(facts, "m_reload_success") - num(facts, "m0_reload_success")
    m_refused = num(facts, "m_reload_failure") - num(facts, "m0_reload_failure")
    m_gen, m_gen0 = num(facts, "m_generation"), num(facts, "m0_generation")
    if not reloads:
        fail.append("no reload was done")
    if wrong:
        fail.append("reloads with an unexpected outcome: " + "; ".join(
            f"#{r['index']} {r['how']} expected {r['expect']}, got {r['got']} (HTTP {r['http']})"
            for r in wrong[:5]))
    if (m_ok, m_refused) != (exp_ok, exp_refused):
        fail.append(f"/metrics reload counters ok {m_ok} refused {m_refused}, "
                    f"expected {exp_ok} and {exp_refused}")
    if m_gen != m_gen0 + exp_ok:
        fail.append(f"config generation {m_gen}, expected {m_gen0 + exp_ok}")
    reload_ms = sorted(r["ms"] for r in reloads)

    # Memory and descriptors.
    rss_warm, rss_end = num(facts, "rss_warm_kb"), num(facts, "rss_end_kb")
    growth = (rss_end - rss_warm) * 100.0 / rss_warm if rss_warm else float("nan")
    if not rss_warm or not rss_end:
        fail.append("RSS was not sampled (crawlgate gone?)")
    elif growth >= args.max_rss_growth:
        fail.append(f"RSS grew {growth:.1f} % from warm-up to the end "
                    f"(limit {args.max_rss_growth:g} %)")
    fd_base, fd_peak, fd_after = (num(facts, "fd_base"), num(facts, "fd_peak"),
                                  num(facts, "fd_after"))
    if facts.get("fd_settled") != "1":
        fail.append(f"open fds not back to baseline: {fd_after} after {facts.get('fd_settle_s')}"
                    f" s, baseline {fd_base}")
    if facts.get("alive") != "1":
        fail.append("crawlgate exited during the run: " + facts.get("died", "?"))
    if facts.get("exit_code") not in ("0", None, ""):
        fail.append(f"crawlgate exited {facts.get('exit_code')} on SIGTERM (expected 0)")

    # Table.
    w = 24
    def row(label, text):
        print(f"{label:<{w}} {text}")
    verdict = lambda ok: "ok" if ok else "FAIL"
    print(f"crawlgate soak {facts.get('date', '')}: {facts.get('duration')} s mixed load, "
          f"warm-up {facts.get('warmup')} s, a reload every {facts.get('reload_every')} s; "
          f"load avg {facts.get('load_before', '?')} -> {facts.get('load_after', '?')}")
    row("normal (wrk, keep-alive)",
        f"{n_rps:,.0f} req/s, {n_req:,} requests, -c{facts.get('connections')}, "
        f"p50 {num(facts, 'normal_p50_us') / 1000:.2f} ms p99 "
        f"{num(facts, 'normal_p99_us') / 1000:.2f} ms, errors {n_err_total}  "
        f"{verdict(n_err_total == 0 and n_req > 0)}")
    row("declared crawlers", "  ".join(
        f"{name} " + " ".join(f"{st}:{c}" for st, c in v.items()) for name, v in crawlers.items())
        or "-")
    row("stealth (throttled)", " ".join(f"{st}:{c}" for st, c in stealth.items()) or "-")
    row("slow clients cut off", "  ".join(
        f"{'slowloris' if k == 'slowloris' else 'slow POST'} {v['cut']}/{v['started']} "
        f"(" + ",".join(f"{a}:{c}" for a, c in sorted(v["answers"].items())) +
        f"; max {v['cut_after_max_s']} s)" for k, v in slow.items()) +
        f"  {verdict(all(v['cut'] == v['started'] and v['started'] for v in slow.values()))}")
    row("reloads (/metrics)",
        f"ok {m_ok}, refused {m_refused} (expected {exp_ok}/{exp_refused}; "
        f"{sum(r['how'] == 'hup' for r in reloads)} SIGHUP, "
        f"{sum(r['how'] == 'post' for r in reloads)} POST; generation {m_gen}; "
        f"{'median %d ms' % reload_ms[len(reload_ms) // 2] if reload_ms else '-'})  "
        f"{verdict(not wrong and (m_ok, m_refused) == (exp_ok, exp_refused) and reloads)}")
    row("RSS (VmRSS)",
        f"idle {mib(num(facts, 'rss_base_kb'))}, after warm-up {mib(rss_warm)}, end "
        f"{mib(rss_end)} ({growth:+.1f} %), after {mib(num(facts, 'rss_after_kb'))}, "
        f"VmHWM {mib(num(facts, 'rss_hwm_kb'))}  "
        f"{verdict(rss_warm and growth < args.max_rss_growth)}")
    row("open fds",
        f"baseline {fd_base}, peak {fd_peak}, after {fd_after} "
        f"({'back in %s s' % facts.get('fd_settle_s') if facts.get('fd_settled') == '1' else 'NOT back'})"
        f"  {verdict(facts.get('fd_settled') == '1')}")
    row("crawlgate", f"{facts.get('bin_desc', '')}; SIGTERM exit {facts.get('exit_code', '?')}")
    for role, sample in sorted(clients.get("error_samples", {}).items()):
        print(f"note: first {role} client error: {sample}")
    for reason in fail:
        print(f"FAIL: {reason}")
    print("result: " + ("PASS" if not fail else "FAIL"))

    if args.json:
        doc = {
            "date": facts.get("date"), "duration_s": num(facts, "duration"),
            "warmup_s": num(facts, "warmup"), "reload_every_s": num(facts, "reload_every"),
            "load_average": {"before": facts.get("load_before"), "after": facts.get("load_after")},
            "crawlgate": facts.get("bin_desc"),
            "normal": {"connections": num(facts, "connections"), "requests": n_req,
                       "requests_per_s": round(n_rps, 1), "errors": n_err_total,
                       "errors_by_kind": n_err, "p50_us": num(facts, "normal_p50_us"),
                       "p99_us": num(facts, "normal_p99_us")},
            "crawlers": crawlers, "stealth": stealth, "slow_clients": slow,
            "reloads": {"ok": m_ok, "refused": m_refused, "expected_ok": exp_ok,
                        "expected_refused": exp_refused, "unexpected": len(wrong),
                        "generation": m_gen, "sighup": sum(r["how"] == "hup" for r in reloads),
                        "post": sum(r["how"] == "post" for r in reloads),
                        "median_ms": reload_ms[len(reload_ms) // 2] if reload_ms else None,
                        "max_ms": reload_ms[-1] if reload_ms else None},
            "rss_kb": {"idle": num(facts, "rss_base_kb"), "after_warmup": rss_warm,
                       "end": rss_end, "after": num(facts, "rss_after_kb"),
                       "hwm": num(facts, "rss_hwm_kb"),
                       "growth_percent": round(growth, 2) if rss_warm else None},
            "fds": {"baseline": fd_base, "peak": fd_peak, "after": fd_after,
                    "back_to_baseline": facts.get("fd_settled") == "1",
                    "settle_s": num(facts, "fd_settle_s")},
            "crawlgate_exit_code": facts.get("exit_code"),
            "pass": not fail, "failures": fail,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    return 0 if not fail else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    load = sub.add_parser("load", help="run the crawler, stealth and slow clients")
    add_load_args(load)
    report = sub.add_parser("report", help="print the final table, write JSON, give the verdict")
    report.add_argument("--facts", required=True)
    report.add_argument("--clients", required=True)
    report.add_argument("--reloads", required=True)
    report.add_argument("--json", default="")
    report.add_argument("--max-rss-growth", type=float, default=5.0)
    args = p.parse_args()
    if args.cmd == "load":
        return cmd_load(load, args)
    return cmd_report(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
