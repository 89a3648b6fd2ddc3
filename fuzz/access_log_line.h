// A reader for one line of crawlgate's JSON-lines access log (proxy/src/access_log.cpp,
// format_jsonl), reduced to the fields `crawlgate replay` and crawlgate-features need.
// There is no C++ reader in the tree yet (replay is "later", docs/model.md), so this small one
// lives with the fuzzer; whoever writes the real reader can take it, and its fuzz target, over.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crawlgate/rules/ip_address.h"

namespace crawlgate::fuzz {

struct LogRecord {
  double ts = 0;       // seconds since the epoch
  std::string ip;      // as written ("203.0.113.0" when anonymised)
  IpAddress address;   // `ip` parsed
  std::string method;  // bytes (the writer's \u00XX escapes mapped back)
  std::string target;
  int version = 11;  // 10 or 11
  std::vector<std::pair<std::string, std::string>> headers;  // when the line has them
};

// Parses one line (a trailing "\n" is allowed). Returns false with `error` set on a line that is
// not a crawlgate access-log line: not JSON, a missing or mistyped field, a bad address, or a
// string with a code point above U+00FF (the writer escapes every non-ASCII byte as \u00XX).
bool parse_access_log_line(std::string_view line, LogRecord& out, std::string& error);

}  // namespace crawlgate::fuzz
