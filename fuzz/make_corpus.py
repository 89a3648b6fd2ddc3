#!/usr/bin/env python3
"""Regenerates the seed corpora in fuzz/corpus/<target>/ (small files, committed).

Sources: the request heads of tests/proxy/request_head_test.cpp (incl. the smuggling cases), the
configs of tests/rules/configs/, user agents from ../shared/data, and access-log lines in the
format of proxy/src/access_log.cpp. Run from anywhere: python3 fuzz/make_corpus.py
"""
import hashlib
import json
import os
import re
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "data")
OUT = os.path.join(ROOT, "fuzz", "corpus")


def write(target, data, name=None):
    if isinstance(data, str):
        data = data.encode("latin-1")
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def c_unescape(s):
    return s.encode("latin-1").decode("unicode_escape").encode("latin-1")


def request_heads():
    src = open(os.path.join(ROOT, "tests/proxy/request_head_test.cpp"), encoding="utf-8").read()
    heads = set()
    for m in re.finditer(r'RejectCase\{"(\w+)", "((?:[^"\\]|\\.)*)"', src):
        heads.add((m.group(1), c_unescape(m.group(2))))
    extra = {
        "get": b"GET /wiki/Main_Page?x=1 HTTP/1.1\r\nHost: example.org\r\nUser-Agent: a b\r\nAccept:  text/html \r\n\r\n",
        "absolute": b"GET http://wiki.example/w/index.php?a=1 HTTP/1.1\r\nHost: other\r\n\r\n",
        "absolute_query": b"GET http://wiki.example?a=1 HTTP/1.1\r\n\r\n",
        "options": b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "http10": b"GET / HTTP/1.0\r\n\r\n",
        "chunked": b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nConnection: close, X-Secret\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "length": b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0012\r\n\r\nhello world!",
        "leading_crlf": b"\r\n\r\nPOST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
        "leading_bare_cr": b"\rPOST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
        "upgrade": b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "keepalive10": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        "nul": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
        "obs_text": b"GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xe9\r\n\r\n",
        "tls": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        "pipelined": b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
        "te_space": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
        "te_tab": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\t\r\n\r\n",
        "cl_zero_pad": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 000000000000000003\r\n\r\nabc",
        "cl_18_digits": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999\r\n\r\n",
        "host_ipv6": b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        "long_method": b"PROPFINDXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX / HTTP/1.1\r\nHost: a\r\n\r\n",
        "empty_host": b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        "xff": b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.7, 10.0.0.1\r\nX-Request-Id: abc\r\n\r\n",
    }
    for name, head in sorted(heads):
        write("fuzz_request_head", head, "test_" + name)
    for name, head in extra.items():
        write("fuzz_request_head", head, name)


def configs():
    base = os.path.join(ROOT, "tests/rules/configs")
    for dirpath, _, files in os.walk(base):
        for f in sorted(files):
            if not f.endswith(".yaml"):
                continue
            data = open(os.path.join(dirpath, f), "rb").read()
            if len(data) <= 4096:
                rel = os.path.relpath(os.path.join(dirpath, f), base).replace("/", "_")
                write("fuzz_config", data, rel[:-5])
    # Configs that use the includable files the fuzz target provides.
    write("fuzz_config", b"include: [parts/classes.yaml, 'parts/rules.d/*.yaml', parts/costs.yaml]\n"
          b"rules:\n  - name: mine\n    class: mine\n    user_agent: ['^curl/']\n", "includes")
    write("fuzz_config", b"include: [parts/loop.yaml]\n", "include_loop")
    write("fuzz_config", b"rules:\n  - name: deep\n    action: deny\n    any:\n      - not: {method: [POST]}\n"
          b"      - all: [{path: ['\\.php$']}, {remote_address: [10.0.0.0/8, '2001:db8::/32']}]\n"
          b"      - header: {x-a: {present: true}, accept: ['text/(html|plain)']}\n", "nested")


def user_agents():
    uas = []
    crawlers = json.load(open(os.path.join(SHARED, "crawler-user-agents/crawler-user-agents.json")))
    for entry in crawlers[::40]:
        if entry.get("instances"):
            uas.append(entry["instances"][0])
    for line in open(os.path.join(SHARED, "browser-user-agents/browser-uas.tsv"), encoding="utf-8").readlines()[1:8]:
        uas.append(line.rstrip("\n").split("\t")[2])
    robots = json.load(open(os.path.join(SHARED, "ai-robots-txt/robots.json")))
    for name in list(robots)[::8]:
        uas.append("Mozilla/5.0 (compatible; %s/1.0)" % name)
    return uas


def rule_match():
    uas = user_agents()
    targets = ["/", "/wiki/Main_Page", "/w/index.php?title=Special:Search&search=x", "/admin/login",
               "/robots.txt", "/feed.xml"]
    for i, ua in enumerate(uas):
        lines = ["GET" if i % 5 else "POST", targets[i % len(targets)], ua]
        if i % 3 == 0:
            lines.append("Accept: text/html")
        if i % 4 == 0:
            lines.append("@10.1.2.3" if i % 8 else "@2001:db8::7")
        write("fuzz_rule_match", "\n".join(lines).encode("utf-8"))


def jstr(b):
    out = '"'
    for c in b:
        if c == 0x22: out += '\\"'
        elif c == 0x5c: out += '\\\\'
        elif c == 0x0a: out += '\\n'
        elif c == 0x0d: out += '\\r'
        elif c == 0x09: out += '\\t'
        elif c < 0x20 or c >= 0x7f: out += '\\u00%02x' % c
        else: out += chr(c)
    return out + '"'


def access_log():
    uas = user_agents()[:12]
    ips = ["203.0.113.9", "2001:db8::1", "198.51.100.0", "::ffff:192.0.2.1"]
    for i, ua in enumerate(uas):
        headers = [("Host", "wiki.example"), ("User-Agent", ua)]
        if i % 2: headers.append(("Cookie", "[redacted]"))
        if i % 3 == 0: headers.append(("X-Bytes", "caf\xe9\x01"))
        line = '{"ts":%d.%06d,"ip":%s,"peer":%s,"method":%s,"target":%s,"version":"%s"' % (
            1760000000 + i, i * 1111, jstr(ips[i % 4].encode()), jstr(b"127.0.0.1"),
            jstr(b"GET"), jstr(("/wiki/Page_%d?q=\xff" % i).encode("latin-1")), "1.1" if i % 4 else "1.0")
        if i % 5:
            line += ',"headers":[' + ",".join("[%s,%s]" % (jstr(n.encode("latin-1")), jstr(v.encode("utf-8") if n == "User-Agent" else v.encode("latin-1"))) for n, v in headers) + "]"
        line += ',"status":200,"bytes":%d,"duration_ms":1.250,"request_id":"r%d"' % (i * 100, i)
        if i % 2:
            line += ',"class":"ai_training","rule":"openai-gptbot","action":"deny","enforced":true'
        write("fuzz_access_log_line", (line + "}\n").encode("ascii"))
    # Combined lines (nginx/Apache), as crawlgate replay --format combined reads them.
    combined = [
        '203.0.113.9 - - [07/Dec/2026:10:00:00 +0000] "GET /wiki/Main_Page HTTP/1.1" 200 5120 "-" "%s"\n' % uas[0],
        '2001:db8::1 - alice [31/Jan/1999:23:59:60 -0930] "HEAD / HTTP/1.0" 304 - "https://x.example/\\x22" "curl/8"\n',
        '198.51.100.7 - - [01/Mar/2024:00:00:00 +0100] "GET /a?q=\\x22\\xFF\\\\ HTTP/1.1" 404 0 "-" "-" "10.0.0.1"\n',
        '192.0.2.1 - - [07/Dec/2026:10:00:02 +0000] "-" 400 0 "-" "-"\n',
        '192.0.2.1 - - [07/Dec/2026:10:00:03 +0000] "GET /common-log-format HTTP/1.1" 200 12\n',
    ]
    for line in combined:
        write("fuzz_access_log_line", line.encode("latin-1"))
    # Second mode of the target: flag byte, 16 address bytes, then NUL-separated fields.
    for flags in range(8):
        addr = bytes([203, 0, 113, 7] + [0] * 12) if flags % 2 == 0 else bytes.fromhex("20010db8000000000000000000000001")
        fields = [b"GET", b"/a?b=\xff", b"User-Agent", b"Mozilla/5.0 \"q\" \x01", b"Cookie", b"s=1"]
        write("fuzz_access_log_line", bytes([flags]) + addr + b"\x00".join(fields))


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    request_heads()
    configs()
    rule_match()
    access_log()
    for t in sorted(os.listdir(OUT)):
        print(t, len(os.listdir(os.path.join(OUT, t))))


if __name__ == "__main__":
    sys.exit(main())
