#!/usr/bin/python3
"""Generate crawlgate's default rule files from the ai.robots.txt and crawler-user-agents lists.

    /usr/bin/python3 tools/gen_default_rules.py            # regenerate, self-check, write
    /usr/bin/python3 tools/gen_default_rules.py --check    # self-check; fail if files are stale

Inputs:  shared/data/ai-robots-txt/robots.json, shared/data/crawler-user-agents/
         crawler-user-agents.json, shared/data/browser-user-agents/browser-uas.tsv (test only),
         tools/agent_classes.yaml (hand-reviewed classes).
Outputs: rules/default/{classes,ai-crawlers,known-bots}.yaml, rules/default/licenses/*,
         tests/rules/data/{ai_class_exceptions,expected_first_match}.tsv.

Needs only the standard library and PyYAML (Debian python3-yaml). If libhs.so.5 (Hyperscan)
is installed, every pattern is also compiled and scanned with the real engine.
"""

import argparse
import ctypes
import ctypes.util
import heapq
import json
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

AI_ROBOTS_VERSION = "ai.robots.txt commit 738c80df2169 (2026-08-22), MIT"
CUA_VERSION = "crawler-user-agents 1.60.0 (npm), MIT"

# name -> (action, description). Written to rules/default/classes.yaml.
CLASSES = {
    "ai_training": ("deny", "collects content to train the operator's AI models"),
    "ai_data": ("deny", "collects for others: AI data providers, scraping platforms, dataset builders"),
    "ai_search": ("throttle", "builds an index for an AI search or answer product"),
    "ai_assistant": ("throttle", "fetches a page because a user asked an AI assistant"),
    "ai_agent": ("throttle", "autonomous AI browsing or coding agent"),
    "search_engine": ("allow", "web search engine crawler"),
    "archiver": ("allow", "web archive crawler"),
    "social_preview": ("allow", "link-preview fetcher of a social network or messenger"),
    "feed_reader": ("allow", "RSS/Atom feed fetcher"),
    "monitor": ("allow", "uptime and performance monitoring"),
    "seo": ("allow", "SEO, backlink and marketing crawler"),
    "scanner": ("allow", "security or vulnerability scanner"),
    "http_library": ("allow", "HTTP library or command-line client default UA (also used by wiki bots)"),
    "browser_automation": ("allow", "headless browser or automation tool"),
    "advertising": ("allow", "ad network or ad-verification crawler"),
    "academic": ("allow", "research crawler"),
    "ai_stealth": ("throttle", "undeclared crawler recognised by its behaviour (behaviour: thresholds)"),
}
AI_CLASSES = ("ai_training", "ai_data", "ai_search", "ai_assistant", "ai_agent")

# crawler-user-agents tag -> class, in priority order for entries with several tags.
TAG_CLASSES = [
    ("search-engine", "search_engine"),
    ("archiver", "archiver"),
    ("social-preview", "social_preview"),
    ("feed-reader", "feed_reader"),
    ("monitoring", "monitor"),
    ("scanner", "scanner"),
    ("seo", "seo"),
    ("http-library", "http_library"),
    ("browser-automation", "browser_automation"),
    ("advertising", "advertising"),
    ("academic", "academic"),
]


class GenError(Exception):
    pass


# ---------------------------------------------------------------- input

class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise GenError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_inputs(data_dir, table_path):
    with open(os.path.join(data_dir, "ai-robots-txt", "robots.json"), encoding="utf-8") as f:
        robots = json.load(f)
    with open(os.path.join(data_dir, "crawler-user-agents", "crawler-user-agents.json"), encoding="utf-8") as f:
        cua = json.load(f)
    browsers = []
    with open(os.path.join(data_dir, "browser-user-agents", "browser-uas.tsv"), encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        col = header.index("user_agent")
        for line in f:
            if line.strip():
                browsers.append(line.rstrip("\n").split("\t")[col])
    with open(table_path, encoding="utf-8") as f:
        table = yaml.load(f, Loader=StrictLoader)
    return robots, cua, browsers, table


# ---------------------------------------------------------------- patterns

class Pattern:
    """One user_agent pattern: kind 'token' (literal, boundaries, caseless) or 'regex'."""

    def __init__(self, kind, text, case_sensitive=False, source=None):
        self.kind, self.text, self.case_sensitive, self.source = kind, text, case_sensitive, source
        if kind == "token":
            # The C++ engine: preceded by start or a non-alphanumeric, followed by end or one.
            # The engine's token boundary (rules/src/rule_set.cpp, docs/config.md): letters, digits,
            # '_' and '-' continue a token, so `ChatGPT` does not match inside `ChatGPT-User`.
            self.py = re.compile(r"(?<![A-Za-z0-9_-])" + re.escape(text) + r"(?![A-Za-z0-9_-])", re.I)
            self.hs = r"(?:^|[^A-Za-z0-9_-])" + hs_escape(text) + r"(?:[^A-Za-z0-9_-]|$)"
            self.hs_caseless = True
        else:
            check_hyperscan_syntax(text)
            self.py = re.compile(text, 0 if case_sensitive else re.I)
            self.hs = text
            self.hs_caseless = not case_sensitive

    def key(self):
        return (self.kind, self.text if self.case_sensitive else self.text.lower(), self.case_sensitive)

    def yaml(self):
        if self.kind == "token":
            return "{token: %s}" % yq(self.text)
        if self.case_sensitive:
            return "{regex: %s, case_sensitive: true}" % yq(self.text)
        return yq(self.text)  # a plain string is a case-insensitive regex


def hs_escape(s):
    return "".join("\\" + c if not c.isalnum() and c != " " else c for c in s)


_FORBIDDEN = [
    (r"\(\?<?[=!]", "lookaround"),
    (r"\(\?<[A-Za-z]", "named group"),
    (r"\(\?P", "named group"),
    (r"\(\?>", "atomic group"),
    (r"\(\?\(", "conditional"),
    (r"\\[1-9]", "backreference"),
    (r"\\k", "named backreference"),
    (r"\\[uUcpPQE]", "escape not portable between JS, PCRE and Hyperscan"),
    (r"[*+?}]\+", "possessive quantifier"),
    (r"\[\^?\]", "JS-only empty class"),
]


def check_hyperscan_syntax(p):
    stripped = re.sub(r"\\\\", "", p)
    for rx, what in _FORBIDDEN:
        if re.search(rx, stripped):
            raise GenError(f"pattern {p!r}: {what} is not supported by Hyperscan")


def js_to_pcre(p):
    """crawler-user-agents patterns are JS regexes (no flags). Hyperscan takes PCRE syntax; the
    subset upstream uses is the same in both except that JS escapes '/', which PCRE does not need."""
    check_hyperscan_syntax(p)
    out, i = [], 0
    while i < len(p):
        if p[i] == "\\" and i + 1 < len(p):
            out.append("/" if p[i + 1] == "/" else p[i:i + 2])
            i += 2
        else:
            out.append(p[i])
            i += 1
    return "".join(out)


# ---------------------------------------------------------------- YAML output helpers

def yq(s):
    """Single-quoted YAML scalar."""
    return "'" + s.replace("'", "''") + "'"


def comment(s):
    return " ".join(s.split())


def slug(s):
    s = re.sub(r"\\[dswDSW]", "", s)  # drop regex classes like \d; keep escaped punctuation
    s = re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-").lower()
    return s or "x"


class Rule:
    def __init__(self, name, cls, patterns, comments, examples, order_key):
        self.name, self.cls, self.patterns = name, cls, patterns
        self.comments, self.examples, self.order_key = comments, examples, order_key
        self.file = None

    def matches(self, ua):
        return any(p.py.search(ua) for p in self.patterns)


def order_rules(rules):
    """Stable topological order: a rule goes before any rule that matches one of its examples
    (so the more specific rule wins); otherwise the given order. Returns (rules, cycles)."""
    n = len(rules)
    after = [set() for _ in range(n)]
    indeg = [0] * n
    for i, r in enumerate(rules):
        for j, s in enumerate(rules):
            if i != j and any(s.matches(ex) for ex in r.examples):
                if j not in after[i]:
                    after[i].add(j)
                    indeg[j] += 1
    heap = [(rules[i].order_key, i) for i in range(n) if indeg[i] == 0]
    heapq.heapify(heap)
    done, out, cycles = [False] * n, [], []
    while len(out) < n:
        if not heap:  # a cycle: two rules match each other's examples; keep the given order
            i = min((rules[k].order_key, k) for k in range(n) if not done[k])[1]
            cycles.append(rules[i].name)
            indeg[i] = 0
            heapq.heappush(heap, (rules[i].order_key, i))
        _, i = heapq.heappop(heap)
        if done[i]:
            continue
        done[i] = True
        out.append(rules[i])
        for j in after[i]:
            indeg[j] -= 1
            if indeg[j] == 0 and not done[j]:
                heapq.heappush(heap, (rules[j].order_key, j))
    return out, cycles


def synthetic_ua(token):
    return f"Mozilla/5.0 (compatible; {token}/1.0; +https://example.com/bot)"


# ---------------------------------------------------------------- build

def build_ai_rules(robots, table):
    agents = table.get("agents") or {}
    errors = []
    missing = [a for a in robots if a not in agents]
    extra = [a for a in agents if a not in robots]
    if missing:
        errors.append("ai.robots.txt agents missing from the table: " + ", ".join(missing))
    if extra:
        errors.append("table agents not in ai.robots.txt: " + ", ".join(extra))
    allowed = {"class", "note", "token", "regex", "case_sensitive", "ua", "covered_by", "example"}
    for a, e in agents.items():
        if not isinstance(e, dict):
            errors.append(f"{a}: entry must be a mapping")
            continue
        bad = set(e) - allowed
        if bad:
            errors.append(f"{a}: unknown keys {sorted(bad)}")
        if e.get("class") not in AI_CLASSES:
            errors.append(f"{a}: class must be one of {AI_CLASSES}, got {e.get('class')!r}")
        modes = [k for k in ("token", "regex", "ua", "covered_by") if k in e]
        if len(modes) > 1:
            errors.append(f"{a}: at most one of token/regex/ua/covered_by, got {modes}")
        if "ua" in e and e["ua"] != "none":
            errors.append(f"{a}: ua must be 'none'")
        cb = e.get("covered_by")
        if cb is not None:
            t = agents.get(cb)
            if not isinstance(t, dict) or "covered_by" in t or t.get("ua") == "none":
                errors.append(f"{a}: covered_by {cb!r} must name an agent with its own rule")
            elif t.get("class") != e.get("class"):
                errors.append(f"{a}: class differs from covering agent {cb}")
        if ("case_sensitive" in e or "example" in e) and "regex" not in e:
            errors.append(f"{a}: case_sensitive/example only go with regex")
    if errors:
        raise GenError("\n".join(errors))

    rules, by_agent, robots_only = [], {}, []
    for idx, (a, e) in enumerate(agents.items()):
        if e.get("ua") == "none":
            robots_only.append(a)
            continue
        if "covered_by" in e:
            continue
        if "regex" in e:
            pat = Pattern("regex", e["regex"], bool(e.get("case_sensitive", False)))
            ex = e.get("example", synthetic_ua(a))
        else:
            pat = Pattern("token", e.get("token", a))
            ex = synthetic_ua(e.get("token", a))
        cls = e["class"]
        r = Rule(f"{cls.replace('_', '-')}-{slug(a)}", cls, [pat], [], [ex], (0, idx))
        r.agents = [a]
        rules.append(r)
        by_agent[a] = r
    for a, e in agents.items():
        if "covered_by" in e:
            r = by_agent[e["covered_by"]]
            r.agents.append(a)
            ex = synthetic_ua(a)
            if not r.matches(ex) and not r.matches(a):
                raise GenError(f"{a}: covered_by {e['covered_by']} but its rule does not match {a!r}")
    for r in rules:
        for a in r.agents:
            info, e = robots[a], agents[a]
            r.comments.append(f"{a} - operator: {comment(info.get('operator', ''))[:90]}; "
                              f"function: {comment(info.get('function', ''))[:90]}")
            if e.get("note"):
                r.comments.append(f"  class note: {comment(e['note'])}")
    names = [r.name for r in rules]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise GenError("duplicate AI rule names: " + ", ".join(dups))
    return rules, robots_only


def first_match(rule_lists, ua):
    for rules in rule_lists:
        for r in rules:
            if r.matches(ua):
                return r
    return None


def build_cua_rules(cua, table, ai_rules):
    cua_ai = table.get("cua_ai") or {}
    known = {e["pattern"] for e in cua}
    errors = [f"cua_ai entry not in crawler-user-agents: {k!r}" for k in cua_ai if k not in known]
    for k, e in cua_ai.items():
        if not isinstance(e, dict) or e.get("class") not in AI_CLASSES or set(e) - {"class", "note"}:
            errors.append(f"cua_ai {k!r}: needs class (one of {AI_CLASSES}) and optional note only")
    rules, covered, used_names = [], [], set()
    for idx, e in enumerate(cua):
        tags, pat = e.get("tags", []), e["pattern"]
        if "ai-crawler" in tags:
            inst = e.get("instances", [])
            if inst and all((m := first_match([ai_rules], u)) and m.cls in AI_CLASSES for u in inst):
                covered.append(pat)
                if pat in cua_ai:
                    errors.append(f"cua_ai {pat!r}: already covered by ai-crawlers.yaml, remove it")
                continue
            if pat not in cua_ai:
                errors.append(f"crawler-user-agents ai-crawler entry {pat!r} is neither covered by an "
                              f"ai.robots.txt rule nor listed under cua_ai")
                continue
            cls, note, order = cua_ai[pat]["class"], cua_ai[pat].get("note"), (0, idx)
        else:
            cls = next((c for t, c in TAG_CLASSES if t in tags), None)
            if cls is None:
                errors.append(f"crawler-user-agents entry {pat!r}: no class for tags {tags}")
                continue
            note, order = None, (1, idx)
        base = f"{cls.replace('_', '-')}-{slug(pat)}"
        name, k = base, 2
        while name in used_names:
            name, k = f"{base}-{k}", k + 1
        used_names.add(name)
        p = Pattern("regex", js_to_pcre(pat), case_sensitive=True, source=pat)
        c = [f"crawler-user-agents pattern {pat!r}, tags [{', '.join(tags)}]"
             + (f", {e['url']}" if e.get("url") else "")]
        if note:
            c.append(f"  class note: {comment(note)}")
        r = Rule(name, cls, [p], c, list(e.get("instances", [])), order)
        r.entry = e
        rules.append(r)
    if errors:
        raise GenError("\n".join(errors))
    return rules, covered


# ---------------------------------------------------------------- Hyperscan (optional)

class Hyperscan:
    CASELESS, SINGLEMATCH, MODE_BLOCK = 1, 8, 1

    class _Err(ctypes.Structure):
        _fields_ = [("message", ctypes.c_char_p), ("expression", ctypes.c_int)]

    _CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint, ctypes.c_ulonglong, ctypes.c_ulonglong,
                           ctypes.c_uint, ctypes.c_void_p)

    def __init__(self):
        name = ctypes.util.find_library("hs") or "libhs.so.5"
        self.lib = ctypes.CDLL(name)
        self.version = self.lib.hs_version
        self.version.restype = ctypes.c_char_p

    def compile(self, exprs, flags):
        n = len(exprs)
        arr = (ctypes.c_char_p * n)(*[x.encode() for x in exprs])
        fl = (ctypes.c_uint * n)(*flags)
        ids = (ctypes.c_uint * n)(*range(n))
        db, err = ctypes.c_void_p(), ctypes.POINTER(self._Err)()
        rc = self.lib.hs_compile_multi(arr, fl, ids, ctypes.c_uint(n), ctypes.c_uint(self.MODE_BLOCK),
                                       None, ctypes.byref(db), ctypes.byref(err))
        if rc != 0:
            msg = (err.contents.message or b"").decode(), err.contents.expression
            self.lib.hs_free_compile_error(err)
            return None, msg
        return db, None

    def scanner(self, db):
        scratch = ctypes.c_void_p()
        if self.lib.hs_alloc_scratch(db, ctypes.byref(scratch)) != 0:
            raise GenError("hs_alloc_scratch failed")
        hits = set()

        def on_match(i, frm, to, fl, ctx):
            hits.add(i)
            return 0
        cb = self._CB(on_match)

        def scan(ua):
            hits.clear()
            data = ua.encode()
            self.lib.hs_scan(db, data, ctypes.c_uint(len(data)), ctypes.c_uint(0), scratch, cb, None)
            return set(hits)
        return scan


def hyperscan_check(all_rules, uas):
    """Compile every pattern with the real engine and compare its matches with Python's."""
    try:
        hs = Hyperscan()
    except OSError:
        return "Hyperscan library not found: skipped (Python re only)"
    exprs, flags, owner = [], [], []
    for ri, r in enumerate(all_rules):
        for p in r.patterns:
            exprs.append(p.hs)
            flags.append(hs.SINGLEMATCH | (hs.CASELESS if p.hs_caseless else 0))
            owner.append(ri)
    for i, x in enumerate(exprs):  # one by one, so an error names its rule
        db, err = hs.compile([x], [flags[i]])
        if err:
            raise GenError(f"Hyperscan rejects {x!r} (rule {all_rules[owner[i]].name}): {err[0]}")
        hs.lib.hs_free_database(db)
    db, err = hs.compile(exprs, flags)
    if err:
        raise GenError(f"Hyperscan multi-compile failed: {err}")
    scan = hs.scanner(db)
    bad = []
    for ua in uas:
        got = {owner[i] for i in scan(ua)}
        want = {ri for ri, r in enumerate(all_rules) if r.matches(ua)}
        if got != want:
            bad.append((ua, sorted(all_rules[i].name for i in got ^ want)))
    if bad:
        raise GenError("Hyperscan and Python disagree on %d UAs, e.g. %r" % (len(bad), bad[:3]))
    return f"Hyperscan {hs.version().decode().split()[0]}: {len(exprs)} patterns compile; " \
           f"matches identical to Python re on {len(uas)} UAs"


# ---------------------------------------------------------------- self-check

def self_check(ai_rules, cua_rules, robots, cua, table, browsers):
    files = [ai_rules, cua_rules]
    problems, exceptions, expected, report = [], [], [], []
    agents = table["agents"]

    # Every AI rule's own examples must first-match it (recall on token/regex form, rule order).
    for r in ai_rules:
        for ex in r.examples:
            m = first_match(files, ex)
            if m is not r:
                problems.append(f"AI rule {r.name}: its example {ex!r} first-matches "
                                f"{m.name if m else 'nothing'}")

    # (a) + (b) over all crawler-user-agents instances.
    n_ai = n_other = 0
    for e in cua:
        is_ai = "ai-crawler" in e.get("tags", [])
        for ua in e.get("instances", []):
            m = first_match(files, ua)
            expected.append((ua, m.name if m else "", m.cls if m else ""))
            if is_ai:
                n_ai += 1
                if m is None or m.cls not in AI_CLASSES:
                    problems.append(f"(a) ai-crawler instance {ua!r} first-matches "
                                    f"{m.name + ' (' + m.cls + ')' if m else 'nothing'}")
            elif m is not None and m.cls in AI_CLASSES:
                n_other += 1
                agent = next((a for a in getattr(m, "agents", []) if Pattern("token", a).py.search(ua)), None)
                if agent is None and getattr(m, "agents", None) and any(
                        p.kind == "regex" and p.py.search(ua) for p in m.patterns):
                    # A hand-written regex of the table (e.g. 'opencode-smartfetch') is the agent's
                    # own UA form: the match itself shows the agent.
                    agent = m.agents[0]
                if agent is None:
                    problems.append(f"(b) {ua!r} (tags {e['tags']}) gets {m.cls} from {m.name} "
                                    f"without an AI agent's token")
                    continue
                note = agents[agent].get("note") or f"ai.robots.txt: {comment(robots[agent]['function'])}"
                exceptions.append((ua, m.cls, f"carries ai.robots.txt agent {agent!r} (rule {m.name}); "
                                   f"crawler-user-agents tags it {'/'.join(e['tags'])}; {comment(note)}"))
            else:
                n_other += 1

    # (c) no browser UA may match any rule.
    fp = [(ua, r.name) for ua in browsers for r in ai_rules + cua_rules if r.matches(ua)]
    for ua, name in fp:
        problems.append(f"(c) browser UA matches {name}: {ua!r}")

    # Rules that none of their own instances reach (shadowed by an earlier rule).
    shadowed = [r.name for r in cua_rules
                if r.examples and not any(first_match(files, u) is r for u in r.examples)]

    per_class = {}
    for r in ai_rules + cua_rules:
        per_class[r.cls] = per_class.get(r.cls, 0) + len(r.patterns)
    n_ai_pat = sum(len(r.patterns) for r in ai_rules)
    n_cua_pat = sum(len(r.patterns) for r in cua_rules)
    report.append(f"ai-crawlers.yaml: {len(ai_rules)} rules, {n_ai_pat} patterns")
    report.append(f"known-bots.yaml:  {len(cua_rules)} rules, {n_cua_pat} patterns")
    report.append(f"total: {len(ai_rules) + len(cua_rules)} rules, {n_ai_pat + n_cua_pat} patterns")
    report.append("patterns per class: " + ", ".join(f"{c}={per_class.get(c, 0)}" for c in CLASSES))
    report.append(f"(a) ai-crawler instances checked: {n_ai}, all first-match an ai_* rule"
                  if not any(p.startswith("(a)") for p in problems) else "(a) FAILED")
    report.append(f"(b) other instances checked: {n_other}; ai_* via an AI agent's token "
                  f"(exceptions): {len(exceptions)}")
    report.append(f"(c) browser UAs checked: {len(browsers)}, matching any rule: {len(fp)}")
    report.append(f"AI rule examples checked: {sum(len(r.examples) for r in ai_rules)}")
    report.append(f"known-bots rules whose own instances all first-match an earlier rule: "
                  f"{len(shadowed)}")
    return problems, exceptions, expected, report, shadowed


# ---------------------------------------------------------------- emit

def header(title, extra):
    lines = [
        f"# {title}",
        "# GENERATED by tools/gen_default_rules.py - do not edit; edit tools/agent_classes.yaml and rerun.",
        f"# Sources: {AI_ROBOTS_VERSION}; {CUA_VERSION}.",
        "# Licences: rules/default/licenses/ (both MIT). Provenance: rules/default/README.md.",
        "# Rules are ordered, the first matching rule wins; load ai-crawlers.yaml before known-bots.yaml.",
    ]
    return "\n".join(lines + [f"# {x}" if x else "#" for x in extra]) + "\n"


def emit_rules(title, extra, rules):
    out = [header(title, extra), "rules:"]
    for r in rules:
        out.append("")
        out.extend(f"  # {c}" for c in r.comments)
        out.append(f"  - name: {r.name}")
        out.append(f"    class: {r.cls}")
        out.append("    user_agent:")
        out.extend(f"      - {p.yaml()}" for p in r.patterns)
    text = "\n".join(out) + "\n"
    verify_emitted(text, rules)
    return text


def verify_emitted(text, rules):
    """Parse the emitted YAML back and compare it with the rules, so quoting mistakes cannot
    slip through; also holds the output to the keys docs/config.md defines."""
    doc = yaml.load(text, Loader=StrictLoader)
    if set(doc) != {"rules"} or len(doc["rules"]) != len(rules):
        raise GenError("emitted YAML does not parse back to the rule list")
    for got, r in zip(doc["rules"], rules):
        want = []
        for p in r.patterns:
            if p.kind == "token":
                want.append({"token": p.text})
            elif p.case_sensitive:
                want.append({"regex": p.text, "case_sensitive": True})
            else:
                want.append(p.text)
        if got != {"name": r.name, "class": r.cls, "user_agent": want}:
            raise GenError(f"emitted YAML for {r.name} parses back as {got!r}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", r.name):
            raise GenError(f"bad rule name {r.name!r}")


# The documented default budget of throttled classes: one request per second per client, with a
# burst of 10 (README, docs/config.md). Class-wide limits are the operator's choice.
DEFAULT_LIMIT = "{rate: 1/s, burst: 10}"
# Clients the model scores as undeclared crawlers: a budget a reader never reaches (6 pages a
# minute sustained, 30 at once), kept per /24 and /48 because these crawlers rotate addresses.
CLASS_LIMITS = {"ai_stealth": "{rate: 6/m, burst: 30}, ipv4_prefix: 24, ipv6_prefix: 48"}


def emit_classes():
    out = [header("crawlgate default classes (actions are defaults; override them in your config)", []),
           "classes:"]
    w = max(len(c) for c in CLASSES)
    for c, (action, desc) in CLASSES.items():
        limit = f", limit: {CLASS_LIMITS.get(c, DEFAULT_LIMIT)}" if action == "throttle" else ""
        out.append(f"  {c + ':':<{w + 1}} {{action: {action}{limit}, description: {yq(desc)}}}")
    return "\n".join(out) + "\n"


def emit_tsv(head, rows):
    def clean(s):
        return s.replace("\t", " ").replace("\n", " ")
    return "\t".join(head) + "\n" + "".join("\t".join(clean(x) for x in row) + "\n" for row in rows)


def generate(data_dir, table_path):
    robots, cua, browsers, table = load_inputs(data_dir, table_path)
    ai_rules, robots_only = build_ai_rules(robots, table)
    ai_rules, ai_cycles = order_rules(ai_rules)
    cua_rules, covered = build_cua_rules(cua, table, ai_rules)
    cua_rules, cua_cycles = order_rules(cua_rules)
    if ai_cycles:
        raise GenError("AI rules match each other's examples (make one more specific): "
                       + ", ".join(ai_cycles))
    problems, exceptions, expected, report, shadowed = self_check(ai_rules, cua_rules, robots, cua, table, browsers)
    uas = [u for e in cua for u in e.get("instances", [])] + browsers + \
          [ex for r in ai_rules for ex in r.examples]
    report.append(hyperscan_check(ai_rules + cua_rules, uas))
    if cua_cycles:
        report.append("known-bots rules kept in upstream order despite overlapping instances: "
                      + ", ".join(cua_cycles))

    ai_extra = [
        "",
        "One rule per ai.robots.txt agent (agents spelled alike share a rule); class and reasoning",
        "per agent in tools/agent_classes.yaml. {token: X} = literal, case-insensitive, with",
        "non-alphanumeric boundaries; generic tokens use a narrower regex.",
        "robots.txt-only tokens, no rule (no client sends them): " + (", ".join(robots_only) or "none"),
    ]
    cua_extra = [
        "",
        "One rule per crawler-user-agents entry; the pattern is upstream's JS regex converted to",
        "PCRE for Hyperscan ('\\/' -> '/'), case-sensitive as upstream matches it.",
        "Class from the entry's tags: " + ", ".join(f"{t}->{c}" for t, c in TAG_CLASSES) + ";",
        "ai-crawler entries: class from tools/agent_classes.yaml (cua_ai), placed first.",
        f"ai-crawler entries left out, ai-crawlers.yaml covers all their instances: {len(covered)}",
    ]
    files = {
        "rules/default/classes.yaml": emit_classes(),
        "rules/default/ai-crawlers.yaml": emit_rules("crawlgate default rules: AI crawlers (ai.robots.txt)",
                                                     ai_extra, ai_rules),
        "rules/default/known-bots.yaml": emit_rules("crawlgate default rules: known bots (crawler-user-agents)",
                                                    cua_extra, cua_rules),
        "tests/rules/data/ai_class_exceptions.tsv": emit_tsv(
            ["user_agent", "expected_class", "reason"], sorted(set(exceptions))),
        "tests/rules/data/expected_first_match.tsv": emit_tsv(
            ["user_agent", "expected_rule", "expected_class"], sorted(set(expected))),
    }
    for name, src in (("ai-robots-txt", "ai-robots-txt/LICENSE"),
                      ("crawler-user-agents", "crawler-user-agents/LICENSE")):
        with open(os.path.join(data_dir, src), encoding="utf-8") as f:
            files[f"rules/default/licenses/{name}.LICENSE"] = f.read()
    return files, problems, report, shadowed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="do not write; fail if outputs are stale")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(ROOT), "shared", "data"),
                    help="shared data folder (default: ../shared/data beside the repo)")
    ap.add_argument("--table", default=os.path.join(ROOT, "tools", "agent_classes.yaml"))
    ap.add_argument("--out", default=ROOT, help="repository root to write into")
    ap.add_argument("-v", "--verbose", action="store_true", help="list shadowed known-bots rules")
    args = ap.parse_args()
    try:
        files, problems, report, shadowed = generate(args.data, args.table)
    except GenError as e:
        print(f"gen_default_rules: error:\n{e}", file=sys.stderr)
        return 1
    for line in report:
        print(line)
    if args.verbose:
        print("shadowed:", ", ".join(shadowed))
    if problems:
        print(f"gen_default_rules: self-check FAILED ({len(problems)}):", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    stale = []
    for rel, text in sorted(files.items()):
        path = os.path.join(args.out, rel)
        old = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                old = f.read()
        if old != text:
            stale.append(rel)
            if not args.check:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8", newline="\n") as f:
                    f.write(text)
    if args.check and stale:
        print("gen_default_rules: stale, rerun the generator: " + ", ".join(stale), file=sys.stderr)
        return 1
    print(("up to date" if not stale else "written: " + ", ".join(stale)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
