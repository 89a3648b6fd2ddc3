// Reads access-log lines back into requests, for `crawlgate replay` (and its fuzz target).
//
// Two formats:
//  - crawlgate's JSON lines (README.md, "Access log"): "ts", "ip", "method", "target", "version"
//    and "headers" are required; "status" and "bytes" are used when present, everything else is
//    ignored. The writer escapes every byte outside printable ASCII as \u00XX, so strings are
//    mapped back to bytes, and a code point above U+00FF is an error.
//  - nginx/Apache combined: `ip ident user [dd/Mon/yyyy:HH:MM:SS +zzzz] "METHOD target HTTP/x.y"
//    status bytes "referer" "user-agent"`, anything after ignored (nginx adds fields). `\xHH`,
//    `\"` and `\\` are unescaped. Only Referer and User-Agent are known; "-" means absent.
// Boost-free: the classifier's offline tools and the app use it alike.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crawlgate/rules/ip_address.h"

namespace crawlgate {

enum class LogFormat { kJsonLines, kCombined };

struct LogRecord {
  double ts = 0;       // seconds since the epoch
  std::string ip;      // as written ("203.0.113.0" when anonymised)
  IpAddress address;   // `ip` parsed
  std::string method;  // bytes, escapes undone
  std::string target;
  int version = 11;  // 10, 11 (20, 30 when a log says HTTP/2 or 3)
  std::vector<std::pair<std::string, std::string>> headers;  // in logged order
  int status = -1;       // -1 when not logged
  long long bytes = -1;  // -1 when not logged or "-"
};

// Parses one line (a trailing "\n" or "\r\n" is allowed). Returns false with `error` set to a
// short reason when the line is not a record of that format.
bool parse_jsonl_line(std::string_view line, LogRecord& out, std::string& error);
bool parse_combined_line(std::string_view line, LogRecord& out, std::string& error);
bool parse_log_line(LogFormat format, std::string_view line, LogRecord& out, std::string& error);

// A log's format from its first non-blank line: '{' is JSON lines, anything else combined.
LogFormat detect_log_format(std::string_view first_line);

std::optional<LogFormat> log_format_from_name(std::string_view name);  // "jsonl", "combined"

}  // namespace crawlgate
