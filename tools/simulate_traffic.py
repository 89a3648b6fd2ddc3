#!/usr/bin/python3
"""Labelled traffic simulator for crawlgate's behavioural classifier.

Writes, for one seed, a time-ordered crawlgate JSON-lines access log (the format in README.md),
a labels file and a replayable request file:

  DIR/access.jsonl   one request per line, as crawlgate would log it (Cookie values redacted)
  DIR/labels.csv     line,client,label,variant   (line is 1-based in access.jsonl; client is the
                     simulated actor, e.g. "human-00017" or "stealth-careful-002"; several actors
                     can share an address, one actor can use many)
  DIR/requests.jsonl {"t": seconds from start, "ip", "method", "target", "headers"} per request,
                     with real Cookie values, for replay through a proxy (X-Forwarded-For from a
                     trusted peer carries "ip")
  DIR/summary.json   the parameters and per-label/variant counts

Labels: human, stealth, declared_ai, search_bot, feed_reader, monitor, link_preview, scanner.
Stealth variants: naive, rotating, careful, very_careful (see tools/README.md; the last one is
meant to be indistinguishable from a human and is reported, not hidden).

Deterministic per seed and parameters: every actor draws from its own generator seeded with
(seed, kind, index), so the output is byte-identical across runs. Python standard library and
NumPy only; run with /usr/bin/python3.
"""

import argparse
import csv
import hashlib
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA_CANDIDATES = [os.environ.get("CRAWLGATE_DATA", ""), os.path.join(REPO, "shared", "data"),
                   os.path.join(os.path.dirname(REPO), "shared", "data"), "/work/shared/data"]

HOST = "wiki.example.org"
ORIGIN = "https://" + HOST
T0 = 1795000000.0  # fixed epoch start: the log's own time

LABELS = ["human", "stealth", "declared_ai", "search_bot", "feed_reader", "monitor",
          "link_preview", "scanner"]
STEALTH_VARIANTS = ["naive", "rotating", "careful", "very_careful"]


# --------------------------------------------------------------------------------------------
# Reference data

def data_dir():
    for d in DATA_CANDIDATES:
        if d and os.path.isfile(os.path.join(d, "browser-user-agents", "browser-uas.tsv")):
            return d
    sys.exit("simulate_traffic: shared/data not found (set CRAWLGATE_DATA)")


def load_browser_uas(d):
    uas, weights, devices = [], [], []
    with open(os.path.join(d, "browser-user-agents", "browser-uas.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                continue
            w, dev, ua = parts
            uas.append(ua)
            weights.append(float(w))
            devices.append(dev)
    w = np.array(weights)
    return uas, w / w.sum(), devices


def load_bot_uas(d):
    with open(os.path.join(d, "crawler-user-agents", "crawler-user-agents.json"), encoding="utf-8") as f:
        entries = json.load(f)
    by_tag = {}
    by_pattern = {}
    for e in entries:
        inst = [i for i in e.get("instances", []) if i and len(i) < 400]
        if not inst:
            continue
        by_pattern[e["pattern"]] = inst
        for t in e.get("tags", []):
            by_tag.setdefault(t, []).append((e["pattern"], inst))
    return by_tag, by_pattern


# --------------------------------------------------------------------------------------------
# The site: a wiki-like URL space (a superset of examples/demo-site)

DEMO_ARTICLES = [
    "Web_crawler", "HTTP", "Reverse_proxy", "Load_balancing", "Robots_exclusion_standard",
    "User_agent", "Search_engine", "Web_scraping", "Large_language_model", "Training_data",
    "Rate_limiting", "Token_bucket", "Tarpit_(networking)", "Cache_(computing)",
    "Content_delivery_network", "Domain_Name_System", "Transmission_Control_Protocol",
    "Internet_Protocol", "IPv6", "Transport_Layer_Security", "Keep-alive", "HTTP_compression",
    "Uniform_Resource_Locator", "Hyperlink", "Wiki", "MediaWiki", "Sitemaps", "Web_archive",
    "Denial-of-service_attack", "Botnet", "CAPTCHA", "Proof_of_work", "Access_log", "Histogram",
    "Percentile", "Throughput", "Event_loop", "Epoll", "Nginx", "HAProxy", "Regular_expression",
    "Aho-Corasick_algorithm", "Radix_tree", "Bloom_filter",
]
WORDS = ("river mountain history music theory battle city river language king church station "
         "island school film album species railway university bridge castle festival algorithm "
         "protocol network library garden museum novel opera planet comet village lake dynasty "
         "treaty engine season football election painting poem theorem war empire cathedral "
         "harbour valley desert forest tower canal airport").split()


class Site:
    def __init__(self, n_articles):
        rng = np.random.default_rng(20240601)
        names = list(DEMO_ARTICLES)
        seen = dict.fromkeys(names)
        while len(names) < n_articles:
            a, b = rng.choice(len(WORDS), 2, replace=False)
            k = int(rng.integers(1, 2000))
            name = "%s_%s_%d" % (WORDS[a].capitalize(), WORDS[b], k)
            if name not in seen:
                seen[name] = None
                names.append(name)
        self.articles = names
        n = len(names)
        ranks = np.arange(1, n + 1, dtype=float)
        pop = 1.0 / ranks ** 1.05  # Zipf-like popularity: humans mostly read popular pages
        self.pop = pop / pop.sum()
        self.images = rng.integers(0, 4, n)  # images per article
        self._links = {}

    def links(self, i):
        """Outgoing article links of article i (deterministic, popularity-biased)."""
        got = self._links.get(i)
        if got is None:
            r = np.random.default_rng([7, i])
            k = int(r.integers(15, 60))
            got = r.choice(len(self.articles), k, replace=True, p=self.pop)
            got = [int(x) for x in got if x != i]
            self._links[i] = got
        return got

    def url(self, i):
        return "/wiki/" + self.articles[i]

    def html_bytes(self, r):
        return int(np.clip(r.lognormal(math.log(14000), 0.45), 2500, 400000))


ASSETS_FIRST = [("/static/wiki.css", "style", 9214), ("/static/wiki.js", "script", 4107),
                ("/static/logo.svg", "image", 1933)]
FAVICON = ("/favicon.ico", "image", 1150)


# --------------------------------------------------------------------------------------------
# Browser headers, per family and request kind, in the browser's own order

LANGS = [("en-US,en;q=0.9", 0.45), ("en-GB,en;q=0.9", 0.1), ("de-DE,de;q=0.9,en;q=0.8", 0.09),
         ("fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7", 0.07), ("es-ES,es;q=0.9", 0.06),
         ("ja,en-US;q=0.9,en;q=0.8", 0.04), ("pt-BR,pt;q=0.9,en-US;q=0.8,en;q=0.7", 0.05),
         ("nl-NL,nl;q=0.9,en-US;q=0.8,en;q=0.7", 0.03), ("pl-PL,pl;q=0.9,en-US;q=0.8,en;q=0.7", 0.03),
         ("it-IT,it;q=0.9,en-US;q=0.8,en;q=0.7", 0.04), ("zh-CN,zh;q=0.9,en;q=0.8", 0.04)]


def browser_family(ua):
    if "Firefox/" in ua and "Seamonkey" not in ua:
        return "firefox"
    if "CriOS/" in ua or "FxiOS/" in ua or "EdgiOS/" in ua:
        return "safari"  # every iOS browser is WebKit underneath
    if "Chrome/" in ua or "Chromium/" in ua:
        return "chrome"
    if "Safari/" in ua:
        return "safari"
    return "chrome"


def chrome_brands(ua):
    import re
    m = re.search(r"Chrome/(\d+)", ua)
    v = m.group(1) if m else "145"
    if "Edg/" in ua:
        brand = "Microsoft Edge"
    elif "OPR/" in ua:
        brand = "Opera"
    else:
        brand = "Google Chrome"
    return '"Chromium";v="%s", "%s";v="%s", "Not_A Brand";v="24"' % (v, brand, v)


def chrome_platform(ua):
    if "Windows" in ua:
        return '"Windows"'
    if "Android" in ua:
        return '"Android"'
    if "Macintosh" in ua:
        return '"macOS"'
    if "CrOS" in ua:
        return '"Chrome OS"'
    return '"Linux"'


class Browser:
    """Header profile of one browser instance (UA, family, language)."""

    def __init__(self, ua, lang, lang_variant_q=True):
        self.ua = ua
        self.family = browser_family(ua)
        self.lang = lang
        self.mobile = "Mobile" in ua or "Android" in ua or "iPhone" in ua
        self.old_safari = self.family == "safari" and ("Version/1" in ua and "Version/16" not in ua
                                                       and "Version/17" not in ua and "Version/18" not in ua
                                                       and "Version/26" not in ua)

    def headers(self, kind, site_rel, referer, cookie, conditional=None):
        """kind: document | style | script | image | fetch. site_rel: none|same-origin|cross-site."""
        h = []
        ua, fam = self.ua, self.family
        if fam == "chrome":
            if kind == "document":
                h += [("Host", HOST), ("Connection", "keep-alive"),
                      ("sec-ch-ua", chrome_brands(ua)),
                      ("sec-ch-ua-mobile", "?1" if self.mobile else "?0"),
                      ("sec-ch-ua-platform", chrome_platform(ua)),
                      ("Upgrade-Insecure-Requests", "1"), ("User-Agent", ua),
                      ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                                 "image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"),
                      ("Sec-Fetch-Site", site_rel), ("Sec-Fetch-Mode", "navigate")]
                if site_rel != "same-origin" or True:
                    h.append(("Sec-Fetch-User", "?1"))
                h.append(("Sec-Fetch-Dest", "document"))
            else:
                accept = {"style": "text/css,*/*;q=0.1", "script": "*/*",
                          "image": "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
                          "fetch": "*/*"}[kind]
                h += [("Host", HOST), ("Connection", "keep-alive"),
                      ("sec-ch-ua-platform", chrome_platform(ua)), ("User-Agent", ua),
                      ("sec-ch-ua", chrome_brands(ua)),
                      ("sec-ch-ua-mobile", "?1" if self.mobile else "?0"), ("Accept", accept),
                      ("Sec-Fetch-Site", "same-origin"),
                      ("Sec-Fetch-Mode", "cors" if kind == "fetch" else "no-cors"),
                      ("Sec-Fetch-Dest", "empty" if kind == "fetch" else kind)]
            if referer:
                h.append(("Referer", referer))
            h += [("Accept-Encoding", "gzip, deflate, br, zstd"), ("Accept-Language", self.lang)]
        elif fam == "firefox":
            accept = {"document": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                      "style": "text/css,*/*;q=0.1", "script": "*/*",
                      "image": "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5",
                      "fetch": "*/*"}[kind]
            lang = self.lang.replace(";q=0.9", ";q=0.5") if self.lang.startswith("en") else self.lang
            h += [("Host", HOST), ("User-Agent", ua), ("Accept", accept), ("Accept-Language", lang),
                  ("Accept-Encoding", "gzip, deflate, br, zstd"), ("Connection", "keep-alive")]
            if referer:
                h.append(("Referer", referer))
            if cookie:
                h.append(("Cookie", cookie))
                cookie = None
            if kind == "document":
                h += [("Upgrade-Insecure-Requests", "1"), ("Sec-Fetch-Dest", "document"),
                      ("Sec-Fetch-Mode", "navigate"), ("Sec-Fetch-Site", site_rel),
                      ("Sec-Fetch-User", "?1"), ("Priority", "u=0, i")]
            else:
                h += [("Sec-Fetch-Dest", "empty" if kind == "fetch" else kind),
                      ("Sec-Fetch-Mode", "cors" if kind == "fetch" else "no-cors"),
                      ("Sec-Fetch-Site", "same-origin"),
                      ("Priority", {"style": "u=2", "script": "u=2", "image": "u=5, i",
                                    "fetch": "u=4"}[kind])]
        else:  # safari / WebKit
            accept = {"document": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                      "style": "text/css,*/*;q=0.1", "script": "*/*",
                      "image": "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,"
                               "video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5",
                      "fetch": "*/*"}[kind]
            # WebKit's order: Accept first, User-Agent late, Accept-Language before Accept-Encoding
            h += [("Host", HOST), ("Accept", accept)]
            if not self.old_safari:
                h.append(("Sec-Fetch-Site", site_rel if kind == "document" else "same-origin"))
            if cookie:
                h.append(("Cookie", cookie))
                cookie = None
            if not self.old_safari:
                h.append(("Sec-Fetch-Dest", "empty" if kind == "fetch" else kind))
            h.append(("Accept-Language", self.lang.split(",")[0] if self.mobile else self.lang))
            if not self.old_safari:
                h.append(("Sec-Fetch-Mode", "navigate" if kind == "document"
                          else ("cors" if kind == "fetch" else "no-cors")))
            h.append(("User-Agent", ua))
            if referer:
                h.append(("Referer", referer))
            h += [("Accept-Encoding", "gzip, deflate, br"), ("Connection", "keep-alive"),
                  ("Priority", "u=0, i" if kind == "document" else "u=2")]
        if conditional:
            h.append(("If-None-Match", conditional))
        if cookie:
            h.append(("Cookie", cookie))
        return h


def requests_headers(ua, accept="*/*"):
    """What python-requests sends, with a browser UA pasted in."""
    return [("Host", HOST), ("User-Agent", ua), ("Accept-Encoding", "gzip, deflate"),
            ("Accept", accept), ("Connection", "keep-alive")]


# --------------------------------------------------------------------------------------------
# Addresses

class AddressBook:
    def __init__(self, rng):
        self.rng = rng
        self.used = {}

    def _fresh(self, make):
        for _ in range(1000):
            a = make()
            if a not in self.used:
                self.used[a] = None
                return a
        raise RuntimeError("address space exhausted")

    def residential(self):
        r = self.rng
        if r.random() < 0.22:  # IPv6 home /64
            return self._fresh(lambda: "2a02:%x:%x:%x::%x" % (r.integers(0x100, 0xffff), r.integers(0, 0xffff),
                                                              r.integers(0, 0xffff), r.integers(1, 0xffff)))
        firsts = [24, 31, 46, 62, 73, 77, 79, 81, 82, 86, 88, 90, 92, 98, 109, 151, 176, 178, 185, 188, 190, 201]
        return self._fresh(lambda: "%d.%d.%d.%d" % (firsts[r.integers(len(firsts))], r.integers(0, 256),
                                                    r.integers(0, 256), r.integers(1, 255)))

    def datacenter(self):
        r = self.rng
        firsts = [3, 13, 18, 34, 35, 44, 52, 54, 104, 138, 139, 142, 143, 147, 157, 159, 161, 164, 165, 167]
        return self._fresh(lambda: "%d.%d.%d.%d" % (firsts[r.integers(len(firsts))], r.integers(0, 256),
                                                    r.integers(0, 256), r.integers(1, 255)))

    def slash24(self):
        r = self.rng
        firsts = [5, 37, 45, 91, 93, 94, 185, 193, 194, 195, 212, 213, 217]
        for _ in range(1000):
            p = "%d.%d.%d." % (firsts[r.integers(len(firsts))], r.integers(0, 256), r.integers(0, 256))
            if p + "1" not in self.used:
                for i in range(1, 255):
                    self.used[p + str(i)] = None
                return p
        raise RuntimeError("address space exhausted")

    def fixed(self, prefix):
        r = self.rng
        return self._fresh(lambda: prefix + str(int(r.integers(1, 255))))


# --------------------------------------------------------------------------------------------
# The simulation

class Sim:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.horizon = args.minutes * 60.0
        d = data_dir()
        self.uas, self.ua_w, self.ua_dev = load_browser_uas(d)
        self.bots_by_tag, self.bots_by_pattern = load_bot_uas(d)
        self.site = Site(args.articles)
        self.addr = AddressBook(np.random.default_rng([self.seed, 999]))
        self.events = []  # (ts, seq, actor, label, variant, ip, method, target, headers, status, bytes, dur)
        self.seq = 0

    def rng(self, *key):
        h = hashlib.sha256(("%d|" % self.seed + "|".join(map(str, key))).encode()).digest()
        return np.random.default_rng(int.from_bytes(h[:8], "little"))

    def emit(self, t, actor, label, variant, ip, method, target, headers, status, nbytes, r):
        if t < 0 or t >= self.horizon:
            return
        dur = float(np.round(r.lognormal(math.log(4.0 if status != 304 else 1.0), 0.8), 3))
        self.events.append((t, self.seq, actor, label, variant, ip, method, target, headers, status,
                            int(nbytes), dur))
        self.seq += 1

    def browser_ua(self, r, device=None):
        while True:
            i = int(r.choice(len(self.uas), p=self.ua_w))
            if device is None or self.ua_dev[i] == device:
                return self.uas[i]

    def lang(self, r):
        langs, w = zip(*LANGS)
        w = np.array(w) / sum(w)
        return langs[int(r.choice(len(langs), p=w))]

    # ---- humans --------------------------------------------------------------------------

    def run_humans(self):
        a = self.args
        n = max(1, int(round(a.humans * a.minutes / 60.0)))
        r0 = self.rng("humans")
        # shared addresses: NAT / CGNAT groups, and IPv4 home addresses
        ips = []
        i = 0
        while i < n:
            if r0.random() < a.nat_fraction:
                size = int(min(n - i, max(2, r0.lognormal(math.log(5), 0.8))))
                ip = self.addr.residential() if r0.random() < 0.3 else self.addr.datacenter()
                ips += [ip] * size
                i += size
            else:
                ips.append(self.addr.residential())
                i += 1
        for k in range(n):
            self.human(k, ips[k])

    def human(self, k, ip):
        r = self.rng("human", k)
        actor = "human-%05d" % k
        site = self.site
        br = Browser(self.browser_ua(r), self.lang(r))
        cookie_ok = r.random() > 0.04
        # 1%: no subresources at all (text browser, reader app, images+CSS blocked, warm cache)
        no_assets = r.random() < self.args.human_no_asset_fraction
        returning = r.random() < 0.35  # warm cache: css/js/logo/favicon already cached
        cookie = ("cg_sid=%016x" % int(r.integers(0, 2**63))) if (returning and cookie_ok) else None
        cookie_pending = None if cookie else ("cg_sid=%016x" % int(r.integers(0, 2**63)))
        cached = {}
        if returning:
            for p, _, _ in ASSETS_FIRST + [FAVICON]:
                cached[p] = True
        # arrival: sessions start anywhere in the window, some start before it (already reading)
        t = float(r.uniform(-0.1, 1.0) * self.horizon)
        n_sessions = 1 + int(r.random() < 0.15) + int(r.random() < 0.05)
        for s in range(n_sessions):
            pages = 1 + int(min(r.geometric(0.16), 60))
            # landing page
            src = r.random()
            if src < 0.55:
                referer, rel = "https://www.google.com/", "cross-site"
            elif src < 0.65:
                referer, rel = "https://duckduckgo.com/", "cross-site"
            elif src < 0.75:
                referer, rel = "https://en.wikipedia.org/", "cross-site"
            else:
                referer, rel = None, "none"
            cur = int(r.choice(len(site.articles), p=site.pop)) if r.random() < 0.85 else 0
            target = site.url(cur) if r.random() < 0.93 else "/"
            tabs = []
            fetch = True
            for p in range(pages):
                if fetch:
                    t, cookie, cookie_pending = self.human_page(
                        r, t, actor, ip, br, target, cur, referer, rel, cookie, cookie_pending,
                        cookie_ok, cached, no_assets)
                fetch = True
                if t >= self.horizon:
                    return
                page_url = ORIGIN + target
                if tabs:  # switch to a background tab opened earlier: already loaded
                    cur, target = tabs.pop(0)
                    fetch = False
                    t += float(np.clip(r.lognormal(math.log(self.args.human_think), 1.0), 1.0, 900))
                    continue
                if r.random() < 0.12:
                    # open several links in background tabs in quick succession
                    links = site.links(cur)
                    for _ in range(int(r.integers(2, 6))):
                        j = links[int(r.integers(len(links)))]
                        t += float(r.uniform(0.4, 3.0))
                        t, cookie, cookie_pending = self.human_page(
                            r, t, actor, ip, br, site.url(j), j, page_url, "same-origin", cookie,
                            cookie_pending, cookie_ok, cached, no_assets)
                        tabs.append((j, site.url(j)))
                    cur, target = tabs.pop(0)
                    fetch = False
                    t += float(np.clip(r.lognormal(math.log(self.args.human_think), 1.0), 1.0, 900))
                    continue
                think = float(np.clip(r.lognormal(math.log(self.args.human_think), 1.1), 1.2, 1800))
                t += think
                x = r.random()
                referer, rel = page_url, "same-origin"
                if x < 0.025:
                    target = "/w/index.php?title=%s&action=history" % site.articles[cur]
                elif x < 0.035:
                    target = "/w/index.php?title=%s&oldid=%d" % (site.articles[cur], int(r.integers(1e6, 9e7)))
                elif x < 0.06:
                    q = "+".join(WORDS[int(i)] for i in r.integers(0, len(WORDS), int(r.integers(1, 3))))
                    target = "/w/index.php?search=%s&title=Special%%3ASearch" % q
                    # search leads to an article next
                elif x < 0.07:
                    target = "/wiki/Special:Random"
                elif x < 0.08:
                    target = "/wiki/Special:RecentChanges"
                else:
                    links = site.links(cur)
                    cur = links[int(r.integers(len(links)))]
                    target = site.url(cur)
            # between sessions
            t += float(r.uniform(600, 3 * 3600))
            if t >= self.horizon:
                return

    def human_page(self, r, t, actor, ip, br, target, cur, referer, rel, cookie, cookie_pending,
                   cookie_ok, cached, no_assets):
        site = self.site
        status = 200
        if target == "/wiki/Special:Random":
            status = 302
        if target.startswith("/w/index.php?search="):
            status = 200
        self.emit(t, actor, "human", "", ip, "GET", target,
                  br.headers("document", rel, referer, cookie), status,
                  site.html_bytes(r) if status == 200 else 0, r)
        if cookie is None and cookie_pending and cookie_ok:
            cookie, cookie_pending = cookie_pending, None
        page_url = ORIGIN + target
        if status == 302:
            cur2 = int(r.integers(len(site.articles)))
            t += float(r.uniform(0.05, 0.3))
            target = site.url(cur2)
            self.emit(t, actor, "human", "", ip, "GET", target,
                      br.headers("document", rel, referer, cookie), 200, site.html_bytes(r), r)
            page_url = ORIGIN + target
            cur = cur2
        if no_assets:
            return t, cookie, cookie_pending
        ta = t + float(r.uniform(0.03, 0.25))
        for path, kind, size in ASSETS_FIRST:
            if not cached.get(path):
                self.emit(ta, actor, "human", "", ip, "GET", path,
                          br.headers(kind, "same-origin", page_url, cookie), 200, size, r)
                cached[path] = True
                ta += float(r.uniform(0.002, 0.06))
            elif r.random() < 0.04:  # revalidation after a reload
                self.emit(ta, actor, "human", "", ip, "GET", path,
                          br.headers(kind, "same-origin", page_url, cookie, conditional='"5f1a-%s"' % path[-3:]),
                          304, 0, r)
        if target.startswith("/wiki/") and not target.startswith("/wiki/Special:"):
            for m in range(int(site.images[cur])):
                p = "/static/images/%s_%d.png" % (site.articles[cur], m)
                if not cached.get(p):
                    ta += float(r.uniform(0.005, 0.2))
                    self.emit(ta, actor, "human", "", ip, "GET", p,
                              br.headers("image", "same-origin", page_url, cookie), 200,
                              int(r.integers(2000, 90000)), r)
                    cached[p] = True
        if not cached.get(FAVICON[0]):
            ta += float(r.uniform(0.05, 0.5))
            self.emit(ta, actor, "human", "", ip, "GET", FAVICON[0],
                      br.headers("image", "same-origin", page_url, cookie), 200, FAVICON[2], r)
            cached[FAVICON[0]] = True
        if r.random() < 0.3:  # the page's script calls an API endpoint (page views / preview)
            ta += float(r.uniform(0.2, 1.5))
            self.emit(ta, actor, "human", "", ip, "GET",
                      "/w/api.php?action=query&format=json&titles=%s&prop=info" % site.articles[cur],
                      br.headers("fetch", "same-origin", page_url, cookie), 200, int(r.integers(300, 2000)), r)
        return max(t, ta), cookie, cookie_pending

    # ---- stealth crawlers ------------------------------------------------------------------

    def frontier(self, r, deep):
        """Crawl order: BFS-ish over links from a seed, never revisiting; deep URLs mixed in."""
        site = self.site
        seen = {}
        queue = [0] + [int(x) for x in r.choice(len(site.articles), 5, replace=False)]
        qi = 0
        while True:
            if qi >= len(queue):
                queue.append(int(r.integers(len(site.articles))))
            a = queue[qi]
            qi += 1
            if a in seen:
                continue
            seen[a] = None
            yield a, site.url(a)
            for j in site.links(a)[:12]:
                if j not in seen:
                    queue.append(j)
            if r.random() < deep:
                name = site.articles[a]
                x = r.random()
                if x < 0.4:
                    yield a, "/w/index.php?title=%s&action=history" % name
                elif x < 0.75:
                    yield a, "/w/index.php?title=%s&oldid=%d" % (name, int(r.integers(1e6, 9e7)))
                elif x < 0.9:
                    yield a, "/w/index.php?title=%s&action=raw" % name
                else:
                    yield a, "/wiki/Special:WhatLinksHere/%s" % name

    def run_stealth(self):
        a = self.args
        for v in STEALTH_VARIANTS:
            n = max(1, int(round(getattr(a, "stealth_" + v) * a.minutes / 60.0)))
            for k in range(n):
                getattr(self, "stealth_" + v)(k)

    def crawl_window(self, r, min_minutes=8):
        start = float(r.uniform(-0.2, 0.85) * self.horizon)
        length = float(r.uniform(min_minutes * 60, max(min_minutes * 60 + 1, self.horizon)))
        return start, min(self.horizon, start + length)

    def stealth_naive(self, k):
        """python-requests under a pasted browser UA, fixed period, no assets/cookies/referers."""
        r = self.rng("stealth-naive", k)
        actor = "stealth-naive-%03d" % k
        ip = self.addr.datacenter() if r.random() < 0.6 else self.addr.residential()
        ua = self.browser_ua(r, "desktop")
        period = float(r.uniform(0.5, 4.0))
        t, end = self.crawl_window(r)
        for _, target in self.frontier(r, 0.25):
            if t >= end:
                break
            self.emit(t, actor, "stealth", "naive", ip, "GET", target, requests_headers(ua), 200,
                      self.site.html_bytes(r), r)
            t += period * float(r.uniform(0.97, 1.03))

    def stealth_rotating(self, k):
        """Rotates over a /24 (one address per request or every few requests) and over browser UAs.
        Headers: a plausible but thin set (Accept, Accept-Language, Accept-Encoding), no Sec-Fetch."""
        r = self.rng("stealth-rotating", k)
        actor = "stealth-rotating-%03d" % k
        prefix = self.addr.slash24()
        uas = [self.browser_ua(r, "desktop") for _ in range(int(r.integers(1, 12)))]
        rate = float(r.uniform(0.5, 4.0))  # requests per second over the whole /24
        per_ip = int(r.integers(1, 8))
        t, end = self.crawl_window(r)
        ip, ua, left = None, None, 0
        for _, target in self.frontier(r, 0.3):
            if t >= end:
                break
            if left <= 0:
                ip = prefix + str(int(r.integers(1, 255)))
                ua = uas[int(r.integers(len(uas)))]
                left = per_ip
            left -= 1
            h = [("Host", HOST), ("User-Agent", ua),
                 ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                 ("Accept-Language", "en-US,en;q=0.5"), ("Accept-Encoding", "gzip, deflate"),
                 ("Connection", "keep-alive")]
            self.emit(t, actor, "stealth", "rotating", ip, "GET", target, h, 200,
                      self.site.html_bytes(r), r)
            t += float(r.exponential(1.0 / rate))

    def stealth_careful(self, k):
        """Full, consistent browser headers, random think time, keeps the cookie, follows links with
        referers, a few addresses; but loads no assets and reads deep URLs (history, oldid)."""
        r = self.rng("stealth-careful", k)
        actor = "stealth-careful-%03d" % k
        br = Browser(self.browser_ua(r, "desktop"), self.lang(r))
        ips = [self.addr.residential() for _ in range(int(r.integers(1, 4)))]
        median = float(r.uniform(2.0, 12.0))
        t, end = self.crawl_window(r)
        cookie, referer, rel = None, None, "none"
        n = 0
        ip = ips[0]
        for _, target in self.frontier(r, 0.2):
            if t >= end:
                break
            if r.random() < 0.01:
                ip = ips[int(r.integers(len(ips)))]
            self.emit(t, actor, "stealth", "careful", ip, "GET", target,
                      br.headers("document", rel, referer, cookie), 200, self.site.html_bytes(r), r)
            if cookie is None:
                cookie = "cg_sid=%016x" % int(r.integers(0, 2**63))
            referer, rel = ORIGIN + target, "same-origin"
            n += 1
            t += float(np.clip(r.lognormal(math.log(median), 0.7), 0.5, 300))

    def stealth_very_careful(self, k):
        """As careful as a human: loads CSS/JS/images like a first visit and then from cache,
        human think time, link following, cookies; moves to a new residential address every few
        dozen pages. Its only tell is persistence (long sessions, no revisits). Expected to be
        nearly undetectable per client key; that is the honest line."""
        r = self.rng("stealth-very-careful", k)
        actor = "stealth-very_careful-%03d" % k
        t, end = self.crawl_window(r, 15)
        median = float(r.uniform(8.0, 25.0))
        pages_left = 0
        ip = br = cookie = None
        cached = {}
        referer, rel = None, "none"
        for cur, target in self.frontier(r, 0.05):
            if t >= end:
                break
            if pages_left <= 0:
                ip = self.addr.residential()
                br = Browser(self.browser_ua(r), self.lang(r))
                cookie, cached, referer, rel = None, {}, "https://www.google.com/", "cross-site"
                pages_left = int(r.integers(15, 60))
            pages_left -= 1
            t, cookie, _ = self.human_page_as(r, t, actor, ip, br, target, cur, referer, rel, cookie,
                                              cached)
            referer, rel = ORIGIN + target, "same-origin"
            t += float(np.clip(r.lognormal(math.log(median), 0.9), 1.5, 900))

    def human_page_as(self, r, t, actor, ip, br, target, cur, referer, rel, cookie, cached):
        """A human-looking page load emitted under the stealth label."""
        before = len(self.events)
        pending = None if cookie else "cg_sid=%016x" % int(r.integers(0, 2**63))
        t2, cookie, _ = self.human_page(r, t, actor, ip, br, target, cur, referer, rel, cookie,
                                        pending, True, cached, False)
        for i in range(before, len(self.events)):
            e = self.events[i]
            self.events[i] = e[:3] + ("stealth", "very_careful") + e[5:]
        return t2, cookie, None

    # ---- declared bots ---------------------------------------------------------------------

    def pick_ua(self, r, tag, patterns=None):
        if patterns:
            pats = [p for p in patterns if p in self.bots_by_pattern]
            inst = self.bots_by_pattern[pats[int(r.integers(len(pats)))]]
            return inst[int(r.integers(len(inst)))]
        entries = self.bots_by_tag[tag]
        _, inst = entries[int(r.integers(len(entries)))]
        return inst[int(r.integers(len(inst)))]

    def run_declared(self):
        a = self.args
        scale = a.minutes / 60.0
        big = ["GPTBot", "CCBot", "Bytespider", "[cC]laude[bB]ot", "PerplexityBot\\/",
               "meta-externalagent\\/", "Amzn-SearchBot", "OAI-SearchBot", "Claude-SearchBot"]
        for k in range(max(1, int(round(a.declared_ai * scale)))):
            r = self.rng("declared", k)
            actor = "declared_ai-%03d" % k
            user_fetch = r.random() < 0.35
            if user_fetch:  # ChatGPT-User & co: a few fetches for one prompt
                ua = self.pick_ua(r, None, ["ChatGPT-User", "Perplexity-User", "Claude-User",
                                            "MistralAI-User", "DuckAssistBot"])
                ip = self.addr.datacenter()
                t = float(r.uniform(0, self.horizon))
                for _ in range(int(r.integers(1, 6))):
                    i = int(r.choice(len(self.site.articles), p=self.site.pop))
                    h = [("Host", HOST), ("Connection", "keep-alive"), ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8"),
                         ("User-Agent", ua), ("Accept-Encoding", "gzip, deflate, br")]
                    self.emit(t, actor, "declared_ai", "user_fetch", ip, "GET", self.site.url(i), h, 200,
                              self.site.html_bytes(r), r)
                    t += float(r.uniform(0.2, 3))
                continue
            if r.random() < 0.5:
                ua = self.pick_ua(r, None, big)
            else:
                ua = self.pick_ua(r, "ai-crawler")
            ips = [self.addr.datacenter() for _ in range(int(r.integers(1, 6)))]
            rate = float(min(3.0, r.lognormal(math.log(0.4), 0.9)))
            t, end = self.crawl_window(r)
            h = [("Host", HOST), ("User-Agent", ua), ("Accept", "*/*"),
                 ("Accept-Encoding", "gzip, br")]
            self.emit(t, actor, "declared_ai", "crawler", ips[0], "GET", "/robots.txt", h, 200, 512, r)
            t += float(r.uniform(0.5, 5))
            for _, target in self.frontier(r, 0.25):
                if t >= end:
                    break
                ip = ips[int(r.integers(len(ips)))]
                self.emit(t, actor, "declared_ai", "crawler", ip, "GET", target, h, 200,
                          self.site.html_bytes(r), r)
                t += float(r.exponential(1.0 / rate))

    def run_search_bots(self):
        a = self.args
        pats = ["Googlebot\\/", "bingbot", "Applebot", "DuckDuckBot", "YandexBot", "Baiduspider",
                "Qwantify", "SeznamBot"]
        for k in range(max(1, int(round(a.search_bots * a.minutes / 60.0)))):
            r = self.rng("search", k)
            actor = "search_bot-%03d" % k
            ua = self.pick_ua(r, None, pats)
            prefix = self.addr.slash24()
            ips = [prefix + str(int(r.integers(1, 255))) for _ in range(int(r.integers(1, 8)))]
            rate = float(r.lognormal(math.log(0.15), 0.8))
            t, end = self.crawl_window(r)
            h = [("Host", HOST), ("Connection", "keep-alive"),
                 ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                 ("From", "bot@example.com"), ("User-Agent", ua), ("Accept-Encoding", "gzip, deflate, br")]
            self.emit(t, actor, "search_bot", "", ips[0], "GET", "/robots.txt", h, 200, 512, r)
            t += 1.0
            if r.random() < 0.5:
                self.emit(t, actor, "search_bot", "", ips[0], "GET", "/sitemap.txt", h, 200, 40000, r)
            pop = self.site.pop
            while t < end:
                x = r.random()
                i = int(r.choice(len(self.site.articles), p=pop)) if x < 0.5 else int(r.integers(len(self.site.articles)))
                target = self.site.url(i)
                st = 200
                if r.random() < 0.03:
                    target = "/static/images/%s_0.png" % self.site.articles[i]
                hh = h
                if r.random() < 0.2:
                    hh = h + [("If-Modified-Since", "Sat, 01 Nov 2026 10:00:00 GMT")]
                    st = 304
                self.emit(t, actor, "search_bot", "", ips[int(r.integers(len(ips)))], "GET", target, hh,
                          st, self.site.html_bytes(r) if st == 200 else 0, r)
                t += float(r.exponential(1.0 / rate))

    def run_feeds(self):
        a = self.args
        for k in range(max(1, int(round(a.feed_readers * a.minutes / 60.0)))):
            r = self.rng("feed", k)
            actor = "feed_reader-%03d" % k
            ua = self.pick_ua(r, "feed-reader")
            ip = self.addr.datacenter()
            period = float(r.choice([300, 600, 900, 1800, 3600]) * r.uniform(0.98, 1.02))
            target = "/feed" if r.random() < 0.5 else "/w/index.php?title=Special:RecentChanges&feed=atom"
            t = float(r.uniform(-period, 0))
            etag = '"feed-%d"' % int(r.integers(1e6))
            while t < self.horizon:
                h = [("Host", HOST), ("User-Agent", ua), ("Accept", "application/atom+xml,application/rss+xml;q=0.9,*/*;q=0.1"),
                     ("Accept-Encoding", "gzip"), ("Connection", "close")]
                st = 200
                if r.random() < 0.7:
                    h.append(("If-None-Match", etag))
                    st = 304
                self.emit(t, actor, "feed_reader", "", ip, "GET", target, h, st, 30000 if st == 200 else 0, r)
                t += period + float(r.normal(0, 2))

    def run_monitors(self):
        a = self.args
        pats = ["UptimeRobot", "[pP]ingdom", "check_http", "StatusCake", "Site24x7", "Better Uptime Bot",
                "NewRelicPinger", "UptimeRobot", "Datadog Agent"]
        for k in range(max(1, int(a.monitors))):
            r = self.rng("monitor", k)
            actor = "monitor-%03d" % k
            ua = self.pick_ua(r, None, pats)
            ips = [self.addr.datacenter() for _ in range(int(r.integers(1, 4)))]
            period = float(r.choice([30, 60, 60, 60, 300]))
            method = "HEAD" if r.random() < 0.4 else "GET"
            target = "/" if r.random() < 0.7 else "/wiki/Main_Page"
            t = float(r.uniform(0, period))
            i = 0
            while t < self.horizon:
                h = [("Host", HOST), ("User-Agent", ua), ("Accept", "*/*")]
                if r.random() < 0.5:
                    h.append(("Cache-Control", "no-cache"))
                self.emit(t, actor, "monitor", "", ips[i % len(ips)], method, target, h, 200,
                          0 if method == "HEAD" else 9000, r)
                i += 1
                t += period + float(r.normal(0, 0.2))

    def run_link_previews(self):
        a = self.args
        pats = ["Slackbot", "facebookexternalhit", "Twitterbot", "LinkedInBot", "WhatsApp",
                "Discordbot", "TelegramBot", "redditbot", "SkypeUriPreview", "Iframely"]
        for k in range(max(1, int(round(a.link_previews * a.minutes / 60.0)))):
            r = self.rng("preview", k)
            actor = "link_preview-%03d" % k
            ua = self.pick_ua(r, None, pats)
            ip = self.addr.datacenter()
            t = float(r.uniform(0, self.horizon))
            i = int(r.choice(len(self.site.articles), p=self.site.pop))
            h = [("Host", HOST), ("User-Agent", ua), ("Accept", "*/*"), ("Accept-Encoding", "gzip")]
            self.emit(t, actor, "link_preview", "", ip, "GET", self.site.url(i), h, 200, self.site.html_bytes(r), r)
            if r.random() < 0.6:
                self.emit(t + float(r.uniform(0.1, 1.0)), actor, "link_preview", "", ip, "GET",
                          "/static/logo.png", h, 200, 3000, r)
            if r.random() < 0.3:
                self.emit(t + float(r.uniform(0.1, 1.0)), actor, "link_preview", "", ip, "GET",
                          "/favicon.ico", h, 200, 1150, r)

    SCAN_PATHS = ["/wp-admin/", "/wp-login.php", "/.env", "/.git/config", "/phpmyadmin/", "/admin",
                  "/config.php", "/xmlrpc.php", "/.aws/credentials", "/server-status", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
                  "/cgi-bin/luci", "/actuator/env", "/.DS_Store", "/backup.zip", "/wp-content/plugins/",
                  "/api/.env", "/owa/auth/logon.aspx", "/HNAP1/", "/boaform/admin/formLogin",
                  "/solr/admin/info/system", "/console/", "/.well-known/security.txt", "/sitemap.xml"]

    def run_scanners(self):
        a = self.args
        uas = ["Mozilla/5.0 zgrab/0.x", "python-requests/2.31.0", "Go-http-client/1.1",
               "curl/8.5.0", "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
               "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"]
        for k in range(max(1, int(round(a.scanners * a.minutes / 60.0)))):
            r = self.rng("scanner", k)
            actor = "scanner-%03d" % k
            ua = uas[int(r.integers(len(uas)))] if r.random() < 0.8 else self.pick_ua(r, "scanner")
            ip = self.addr.datacenter()
            t = float(r.uniform(0, self.horizon))
            paths = [self.SCAN_PATHS[int(i)] for i in r.permutation(len(self.SCAN_PATHS))[:int(r.integers(3, len(self.SCAN_PATHS)))]]
            paths.insert(0, "/")
            h = [("Host", HOST), ("User-Agent", ua), ("Accept", "*/*"), ("Accept-Encoding", "gzip")]
            gap = float(r.uniform(0.05, 2.0))
            for p in paths:
                st = 200 if p in ("/", "/sitemap.xml", "/.well-known/security.txt") else 404
                if p == "/sitemap.xml":
                    st = 404
                self.emit(t, actor, "scanner", "", ip, "GET", p, h, st, 9000 if st == 200 else 153, r)
                t += gap * float(r.uniform(0.5, 1.5))

    # ---- output ----------------------------------------------------------------------------

    def run(self):
        self.run_humans()
        self.run_stealth()
        self.run_declared()
        self.run_search_bots()
        self.run_feeds()
        self.run_monitors()
        self.run_link_previews()
        self.run_scanners()
        self.events.sort(key=lambda e: (round(e[0], 6), e[1]))

    def write(self, out):
        os.makedirs(out, exist_ok=True)
        rid = self.rng("request-ids")
        counts = {}
        with open(os.path.join(out, "access.jsonl"), "w", encoding="utf-8") as log, \
                open(os.path.join(out, "requests.jsonl"), "w", encoding="utf-8") as req, \
                open(os.path.join(out, "labels.csv"), "w", encoding="utf-8", newline="") as lab:
            lw = csv.writer(lab, lineterminator="\n")
            lw.writerow(["line", "client", "label", "variant"])
            for n, e in enumerate(self.events, 1):
                t, _, actor, label, variant, ip, method, target, headers, status, nbytes, dur = e
                logged = [[k, "[redacted]" if k.lower() == "cookie" else v] for k, v in headers]
                rec = {"ts": round(T0 + t, 6), "ip": ip, "peer": "127.0.0.1", "method": method,
                       "target": target, "version": "1.1", "headers": logged, "status": status,
                       "bytes": nbytes, "duration_ms": dur, "request_id": rid.bytes(16).hex()}
                log.write(json.dumps(rec, separators=(",", ":")) + "\n")
                req.write(json.dumps({"t": round(t, 6), "ip": ip, "method": method, "target": target,
                                      "headers": [[k, v] for k, v in headers]},
                                     separators=(",", ":")) + "\n")
                lw.writerow([n, actor, label, variant])
                key = label + ("/" + variant if variant else "")
                c = counts.setdefault(key, [0, {}])
                c[0] += 1
                c[1][actor] = None
        summary = {"seed": self.seed, "minutes": self.args.minutes, "requests": len(self.events),
                   "params": {k: v for k, v in sorted(vars(self.args).items()) if k != "out"},
                   "counts": {k: {"requests": v[0], "actors": len(v[1])} for k, v in sorted(counts.items())}}
        with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1, sort_keys=True)
            f.write("\n")
        return summary


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--out", required=True)
    p.add_argument("--articles", type=int, default=20000, help="size of the wiki's URL space")
    g = p.add_argument_group("population (per hour unless noted)")
    g.add_argument("--humans", type=float, default=1500, help="human visitors per hour")
    g.add_argument("--nat-fraction", type=float, default=0.25,
                   help="share of humans behind shared NAT/CGNAT addresses")
    g.add_argument("--human-think", type=float, default=25.0, help="median think time, seconds")
    g.add_argument("--human-no-asset-fraction", type=float, default=0.01,
                   help="humans whose browser loads no subresources (text browsers, reader apps)")
    g.add_argument("--stealth-naive", type=float, default=4)
    g.add_argument("--stealth-rotating", type=float, default=2)
    g.add_argument("--stealth-careful", type=float, default=8)
    g.add_argument("--stealth-very-careful", type=float, default=6)
    g.add_argument("--declared-ai", type=float, default=8)
    g.add_argument("--search-bots", type=float, default=4)
    g.add_argument("--feed-readers", type=float, default=6)
    g.add_argument("--monitors", type=int, default=3, help="monitors (total, not per hour)")
    g.add_argument("--link-previews", type=float, default=20)
    g.add_argument("--scanners", type=float, default=6)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    sim = Sim(args)
    sim.run()
    s = sim.write(args.out)
    print("simulate_traffic: seed %d, %g min: %d requests -> %s" % (args.seed, args.minutes, s["requests"], args.out))
    for k, v in s["counts"].items():
        print("  %-26s %7d requests %5d actors" % (k, v["requests"], v["actors"]))


if __name__ == "__main__":
    main()
