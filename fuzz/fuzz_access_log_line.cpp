// libFuzzer target: the access-log reader `crawlgate replay` uses (classifier
// access_log_reader.h), two ways:
//  1. the input as a log line, JSON lines and combined: the reader must never crash, and what it
//     accepts must survive re-serialisation through the real writer (format_jsonl,
//     format_combined) unchanged;
//  2. the input as request fields: the real writer (format_jsonl, append_json_string) must emit
//     one valid JSON line ending in "\n" with no raw control byte, and the reader must give the
//     exact bytes back (method, target, header names and values; cookie/authorization values
//     redacted) and the address, also when anonymised; the same through format_combined for the
//     request line, Referer and User-Agent.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "crawlgate/classifier/access_log_reader.h"
#include "crawlgate/proxy/access_log.h"

using namespace crawlgate;

namespace {

[[noreturn]] void fail(const char* what, std::string_view line) {
  std::fprintf(stderr, "fuzz_access_log_line invariant broken: %s\nline: %.*s\n", what,
               static_cast<int>(line.size()), line.data());
  std::abort();
}
#define CHECK(cond, line) \
  do {                    \
    if (!(cond)) fail(#cond, line); \
  } while (0)

bool redacted(std::string_view name) {
  return iequals(name, "cookie") || iequals(name, "authorization") ||
         iequals(name, "proxy-authorization");
}

void check_written(const proxy::AccessLogEntry& entry, bool anonymize) {
  std::string line = proxy::format_jsonl(entry, /*with_headers=*/true, anonymize);
  CHECK(!line.empty() && line.back() == '\n', line);
  for (std::size_t i = 0; i + 1 < line.size(); ++i) {
    auto c = static_cast<unsigned char>(line[i]);
    CHECK(c >= 0x20 && c < 0x7f, line);  // one line, pure ASCII
  }
  LogRecord record;
  std::string error;
  if (!parse_jsonl_line(line, record, error)) fail(("reader refused: " + error).c_str(), line);
  CHECK(record.method == entry.method, line);
  CHECK(record.target == entry.target, line);
  CHECK(record.version == entry.version, line);
  CHECK(record.headers.size() == entry.headers.size(), line);
  for (std::size_t i = 0; i < record.headers.size(); ++i) {
    CHECK(record.headers[i].first == entry.headers[i].name, line);
    if (redacted(entry.headers[i].name)) {
      CHECK(record.headers[i].second == "[redacted]", line);
    } else {
      CHECK(record.headers[i].second == entry.headers[i].value, line);
    }
  }
  IpAddress expected = anonymize ? entry.client.masked(entry.client.is_v4() ? 24 : 48) : entry.client;
  CHECK(record.address == expected, line);
  CHECK(record.ip == expected.to_string(), line);
}

// As the combined writer picks it: the first non-empty value.
std::string_view first_header(const proxy::AccessLogEntry& entry, std::string_view name) {
  for (const HeaderField& field : entry.headers) {
    if (iequals(field.name, name) && !field.value.empty()) return field.value;
  }
  return {};
}

// The combined writer keeps only the request line, Referer and User-Agent; "-" stands for empty.
void check_written_combined(const proxy::AccessLogEntry& entry) {
  std::string line = proxy::format_combined(entry, false);
  LogRecord record;
  std::string error;
  bool parsed = parse_combined_line(line, record, error);
  // A method or target with a raw space cannot be told apart in a combined log, nor an empty
  // one: the reader may refuse those, nothing else.
  auto spaced = [](std::string_view s) { return s.empty() || s.find(' ') != s.npos; };
  if (!parsed) {
    CHECK(spaced(entry.method) || spaced(entry.target), line);
    return;
  }
  if (spaced(entry.method) || spaced(entry.target)) return;
  CHECK(record.method == entry.method, line);
  CHECK(record.target == entry.target, line);
  CHECK(record.version == entry.version, line);
  CHECK(record.address == entry.client, line);
  std::string_view user_agent = first_header(entry, "user-agent");
  std::string_view referer = first_header(entry, "referer");
  std::string got_user_agent, got_referer;
  for (const auto& [name, value] : record.headers) {
    if (name == "User-Agent") got_user_agent = value;
    if (name == "Referer") got_referer = value;
  }
  if (user_agent != "-") CHECK(got_user_agent == user_agent, line);
  if (referer != "-") CHECK(got_referer == referer, line);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  const std::string text(reinterpret_cast<const char*>(data), size);

  // 1. The input as a line of the log, in each format. The writers know HTTP/1.0 and 1.1 only; a
  // log saying HTTP/2 is replayed as 1.1.
  LogRecord record;
  std::string error;
  auto rewrite = [&record](auto&& check) {
    std::vector<HeaderField> fields;
    for (const auto& [name, value] : record.headers) fields.push_back({name, value});
    proxy::AccessLogEntry entry;
    entry.client = entry.peer = record.address;
    entry.method = record.method;
    entry.target = record.target;
    entry.version = record.version == 10 ? 10 : 11;
    entry.headers = fields;
    check(entry);
  };
  if (parse_jsonl_line(text, record, error)) {
    rewrite([](const proxy::AccessLogEntry& entry) { check_written(entry, false); });
  } else {
    CHECK(!error.empty(), text);
  }
  if (parse_combined_line(text, record, error)) {
    rewrite([](const proxy::AccessLogEntry& entry) { check_written_combined(entry); });
  } else {
    CHECK(!error.empty(), text);
  }

  // 2. The input as request fields: byte 0 picks the address family and anonymisation, the next
  // 16 bytes the address, then NUL-separated method, target, and name/value pairs.
  if (size < 17) return 0;
  proxy::AccessLogEntry entry;
  std::array<uint8_t, 16> bytes{};
  std::copy(data + 1, data + 17, bytes.begin());
  if (data[0] & 1) {
    entry.client = IpAddress::v6(bytes);
  } else {
    entry.client = IpAddress::v4(uint32_t{bytes[0]} << 24 | uint32_t{bytes[1]} << 16 |
                                 uint32_t{bytes[2]} << 8 | bytes[3]);
  }
  // The writer's address must read back as the same address.
  auto reparsed = IpAddress::parse(entry.client.to_string());
  CHECK(reparsed && *reparsed == entry.client, entry.client.to_string());
  entry.peer = entry.client;
  entry.version = (data[0] & 4) ? 10 : 11;
  std::vector<std::string_view> parts;
  std::string_view rest(text);
  rest.remove_prefix(17);
  while (true) {
    std::size_t nul = rest.find('\0');
    parts.push_back(rest.substr(0, nul));
    if (nul == std::string_view::npos) break;
    rest.remove_prefix(nul + 1);
  }
  entry.method = parts[0];
  entry.target = parts.size() > 1 ? parts[1] : std::string_view("/");
  std::vector<HeaderField> fields;
  for (std::size_t i = 2; i + 1 < parts.size(); i += 2) fields.push_back({parts[i], parts[i + 1]});
  entry.headers = fields;
  check_written(entry, (data[0] & 2) != 0);
  check_written_combined(entry);
  return 0;
}
