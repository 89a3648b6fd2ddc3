// libFuzzer target: the request-head path every client byte goes through before anything is
// forwarded (proxy/src/session.cpp): cannot_be_request on the partial head, find_head_end, then
// parse_request_head on exactly the measured bytes. Besides ASan/UBSan it checks invariants:
//  - find_head_end returns 0 or a size <= the input, and the head it measures ends in LF LF or
//    LF CR LF; cannot_be_request never rejects a head that parses;
//  - a successful parse: head_size == the head's size; no method/target/header name/value holds
//    CR, LF or NUL (or any byte the grammar excludes); values carry no surrounding whitespace;
//    content_length and chunked are never both set; HTTP/1.1 always has a Host;
//  - the parse is deterministic and survives a re-serialisation (method SP target SP version,
//    "name: value" lines) with the same result;
//  - smuggling: whenever parse_request_head accepts a head, Beast's request parser — which the
//    session hands the very same bytes to for body framing — accepts it too and frames the body
//    the same way (chunked / Content-Length).
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <cstdio>
#include <limits>
#include <cstdlib>
#include <string>
#include <string_view>

#include "crawlgate/proxy/request_head.h"

namespace http = boost::beast::http;
using crawlgate::proxy::HeadError;
using crawlgate::proxy::RequestHead;

namespace {

[[noreturn]] void fail(const char* what, std::string_view head) {
  std::fprintf(stderr, "fuzz_request_head invariant broken: %s\nhead (%zu bytes): ", what,
               head.size());
  for (unsigned char c : head) {
    if (c >= 0x20 && c < 0x7f && c != '\\') std::fputc(c, stderr);
    else std::fprintf(stderr, "\\x%02x", c);
  }
  std::fputc('\n', stderr);
  std::abort();
}
#define CHECK(cond, head) \
  do {                    \
    if (!(cond)) fail(#cond, head); \
  } while (0)

bool is_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}
bool all_tchar(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!is_tchar(c)) return false;
  }
  return true;
}
bool is_within(std::string_view part, std::string_view whole) {
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

void check_parsed(std::string_view head, const RequestHead& out) {
  CHECK(out.head_size == head.size(), head);
  CHECK(all_tchar(out.method), head);
  CHECK(!out.target.empty(), head);
  for (unsigned char c : out.target) CHECK(c > 0x20 && c < 0x7f, head);
  CHECK(out.version == 10 || out.version == 11, head);
  CHECK(is_within(out.method, head) && is_within(out.target, head), head);
  CHECK(!out.origin_target.empty(), head);
  CHECK(out.origin_target.front() == '/' || out.origin_target.front() == '?' ||
            out.origin_target == "*",
        head);
  CHECK(out.origin_target != "*" || out.method == "OPTIONS", head);
  for (const auto& field : out.headers) {
    CHECK(all_tchar(field.name), head);
    CHECK(is_within(field.name, head) && is_within(field.value, head), head);
    for (unsigned char c : field.value) {
      CHECK(c != '\r' && c != '\n' && c != '\0', head);
      CHECK(c == '\t' || (c >= 0x20 && c != 0x7f), head);
    }
    if (!field.value.empty()) {
      CHECK(field.value.front() != ' ' && field.value.front() != '\t', head);
      CHECK(field.value.back() != ' ' && field.value.back() != '\t', head);
    }
  }
  for (unsigned char c : out.host) CHECK(c > 0x20 && c < 0x7f && c != '/' && c != '@', head);
  CHECK(!(out.content_length && out.chunked), head);
  CHECK(!(out.chunked && out.version == 10), head);
  if (out.content_length) CHECK(*out.content_length < 1000000000000000000ull, head);
  CHECK(out.headers.size() <= 128, head);
  for (auto token : out.connection_tokens) CHECK(!token.empty() && is_within(token, head), head);
  if (out.version == 11) {
    bool host = out.host_from_target;
    for (const auto& field : out.headers) host |= crawlgate::iequals(field.name, "host");
    CHECK(host, head);
  }
}

std::string reserialize(const RequestHead& out) {
  std::string text;
  text.append(out.method).append(" ").append(out.target);
  text.append(out.version == 10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  for (const auto& field : out.headers) text.append(field.name).append(": ").append(field.value).append("\r\n");
  text.append("\r\n");
  return text;
}

bool same(const RequestHead& a, const RequestHead& b) {
  if (a.method != b.method || a.target != b.target || a.origin_target != b.origin_target ||
      a.version != b.version || a.host != b.host || a.host_from_target != b.host_from_target ||
      a.content_length != b.content_length || a.chunked != b.chunked ||
      a.expect_continue != b.expect_continue || a.connection_close != b.connection_close ||
      a.connection_keep_alive != b.connection_keep_alive ||
      a.connection_upgrade != b.connection_upgrade || a.headers.size() != b.headers.size() ||
      a.connection_tokens != b.connection_tokens) {
    return false;
  }
  for (std::size_t i = 0; i < a.headers.size(); ++i) {
    if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value) return false;
  }
  return true;
}

// Known finding F1 (reported, proxy/src/request_head.cpp owns the fix): parse_request_head does
// not check that Connection is a comma-separated token list and ignores Proxy-Connection, while
// Beast refuses such a head with "bad value" — after session.cpp already forwarded it upstream
// (on_upstream_head_written -> 400 "could not be framed"). Until request_head.cpp validates both,
// such heads are left out of the Beast comparison here; set this to 0 to see them again.
#ifndef CRAWLGATE_FUZZ_SKIP_KNOWN_F1
#define CRAWLGATE_FUZZ_SKIP_KNOWN_F1 0  // F1 is fixed: Connection and Proxy-Connection are validated
#endif

bool token_list(std::string_view list) {
  bool any = false;
  while (true) {
    std::size_t comma = list.find(',');
    std::string_view element = list.substr(0, comma);
    while (!element.empty() && (element.front() == ' ' || element.front() == '\t')) element.remove_prefix(1);
    while (!element.empty() && (element.back() == ' ' || element.back() == '\t')) element.remove_suffix(1);
    if (!element.empty()) {
      if (!all_tchar(element)) return false;
      any = true;
    }
    if (comma == std::string_view::npos) return any;
    list.remove_prefix(comma + 1);
  }
}

bool known_f1(const RequestHead& out) {
  for (const auto& field : out.headers) {
    if ((crawlgate::iequals(field.name, "connection") ||
         crawlgate::iequals(field.name, "proxy-connection")) &&
        !token_list(field.value)) {
      return true;
    }
  }
  return false;
}

// What session.cpp does once the head is validated and has a body: Beast frames the body.
void check_beast_agrees(std::string_view head, const RequestHead& out) {
  http::request_parser<http::string_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());  // as session.cpp (kNoBodyLimit)
  parser.header_limit(static_cast<std::uint32_t>(head.size() + 1));
  parser.eager(false);
  boost::beast::error_code ec;
  std::size_t used = parser.put(boost::asio::buffer(head.data(), head.size()), ec);
  if (!out.has_body()) {
    // Bodiless requests never reach Beast, but a mismatch here would still be worth knowing:
    // Beast must not see a body where we see none.
    if (!ec && parser.is_header_done()) {
      CHECK(!parser.chunked(), head);
      CHECK(!parser.content_length() || *parser.content_length() == 0, head);
    }
    return;
  }
  if (ec && CRAWLGATE_FUZZ_SKIP_KNOWN_F1 && ec == http::error::bad_value && known_f1(out)) return;
  if (ec) fail(("Beast refuses a head we accepted: " + ec.message()).c_str(), head);
  CHECK(parser.is_header_done(), head);
  CHECK(used == head.size(), head);
  CHECK(parser.chunked() == out.chunked, head);
  if (out.content_length) {
    CHECK(parser.content_length() && *parser.content_length() == *out.content_length, head);
  } else {
    CHECK(!parser.content_length(), head);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  const std::string bytes(reinterpret_cast<const char*>(data), size);  // exact-size heap copy
  const std::string_view input(bytes);

  // The session asks cannot_be_request on every partial read before the head is complete.
  for (std::size_t n = 0; n <= input.size(); n += (n < 80 ? 1 : 997)) {
    (void)crawlgate::proxy::cannot_be_request(input.substr(0, n));
  }

  std::size_t end = crawlgate::proxy::find_head_end(input);
  CHECK(end <= input.size(), input);
  if (end == 0) {
    // parse_request_head must cope with any bytes; without an empty line nothing parses.
    RequestHead out;
    if (!crawlgate::proxy::parse_request_head(input, out)) fail("a head without an end parsed", input);
    return 0;
  }
  CHECK(end >= 2 && input[end - 1] == '\n', input);
  CHECK(input[end - 2] == '\n' || (end >= 3 && input[end - 2] == '\r' && input[end - 3] == '\n'),
        input);
  // Exact-size copies, so ASan sees any read past the head.
  const std::string measured_copy(input.substr(0, end));
  const std::string_view measured(measured_copy);
  CHECK(crawlgate::proxy::find_head_end(measured) == end, input);

  // parse_request_head on the measured bytes as such (it skips leading CRLFs itself) ...
  {
    RequestHead out;
    if (!crawlgate::proxy::parse_request_head(measured, out, 128)) check_parsed(measured, out);
  }
  // ... and exactly as session.cpp does: leading CR/LF bytes stripped, the rest kept.
  std::size_t skip = 0;
  while (skip < end && (measured[skip] == '\r' || measured[skip] == '\n')) ++skip;
  const std::string storage(measured.substr(skip));
  const std::string_view head(storage);

  RequestHead out;
  std::optional<HeadError> error = crawlgate::proxy::parse_request_head(head, out, 128);
  if (error) {
    // 501: CONNECT, and transfer codings other than chunked (RFC 9112 6.1).
    CHECK(error->status == 400 || error->status == 417 || error->status == 431 ||
              error->status == 501 || error->status == 505,
          head);
    CHECK(!error->reason.empty(), head);
    return 0;
  }
  check_parsed(head, out);
  // A head that parses was never refused early as "cannot be a request" (as its bytes arrived).
  // cannot_be_request deliberately refuses methods longer than 33 bytes (no real method is).
  if (out.method.size() <= 33)
  for (std::size_t n = 0; n <= end; n += (n < 80 ? 1 : 997)) {
    CHECK(!crawlgate::proxy::cannot_be_request(measured.substr(0, n)), measured);
  }

  RequestHead again;
  CHECK(!crawlgate::proxy::parse_request_head(head, again, 128), head);
  CHECK(same(out, again), head);

  const std::string rebuilt = reserialize(out);
  RequestHead reparsed;
  CHECK(crawlgate::proxy::find_head_end(rebuilt) == rebuilt.size(), rebuilt);
  auto rebuilt_error = crawlgate::proxy::parse_request_head(rebuilt, reparsed, 128);
  if (rebuilt_error) fail(("re-serialised head refused: " + rebuilt_error->reason).c_str(), rebuilt);
  CHECK(same(out, reparsed), rebuilt);

  check_beast_agrees(head, out);
  return 0;
}
