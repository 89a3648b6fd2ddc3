#include "crawlgate/proxy/request_head.h"

#include <array>

namespace crawlgate::proxy {
namespace {

constexpr std::array<bool, 256> make_tchar_table() {
  std::array<bool, 256> table{};
  for (int c = '0'; c <= '9'; ++c) table[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) table[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) table[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) table[static_cast<unsigned char>(c)] = true;
  return table;
}
constexpr auto kTchar = make_tchar_table();

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!kTchar[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

// field-vchar = VCHAR / obs-text, plus SP and HTAB inside a value.
bool is_field_value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

// Request-target characters: printable ASCII except SP; obs-text is not allowed in a URI.
bool is_target_char(unsigned char c) { return c > 0x20 && c < 0x7f; }

bool is_host_char(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '-': case '.': case '_': case '~': case '%': case ':': case '[': case ']': case '!':
    case '$': case '&': case '\'': case '(': case ')': case '*': case '+': case ',': case ';':
    case '=':
      return true;
    default:
      return false;
  }
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

template <typename F>
void for_each_list_element(std::string_view list, F&& f) {
  while (!list.empty()) {
    std::size_t comma = list.find(',');
    std::string_view element = trim_ows(list.substr(0, comma));
    if (!element.empty()) f(element);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

// A comma-separated list of tokens (RFC 9110 §5.6.1), empty elements allowed.
bool is_token_list(std::string_view list) {
  while (true) {
    std::size_t comma = list.find(',');
    std::string_view element = trim_ows(list.substr(0, comma));
    if (!element.empty() && !is_token(element)) return false;
    if (comma == std::string_view::npos) return true;
    list.remove_prefix(comma + 1);
  }
}

HeadError bad(std::string reason, int status = 400) { return HeadError{status, std::move(reason)}; }

// "gzip, chunked": codings crawlgate does not implement, then a final chunked. The framing is
// clear, only the coding is not supported: 501 (RFC 9112 §6.1). Chunked not last, applied twice
// or next to an empty element leaves the framing in doubt instead: that stays 400 (§6.3).
bool is_other_coding_then_chunked(std::string_view list) {
  std::size_t codings = 0;
  std::size_t chunked = 0;
  std::string_view last;
  while (true) {
    std::size_t comma = list.find(',');
    std::string_view element = trim_ows(list.substr(0, comma));
    if (!is_token(element)) return false;
    ++codings;
    if (iequals(element, "chunked")) ++chunked;
    last = element;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return codings >= 2 && chunked == 1 && iequals(last, "chunked");
}

// Splits one line ending in CRLF off `rest`. A bare LF or a CR not followed by LF is an error.
std::optional<HeadError> take_line(std::string_view& rest, std::string_view& line) {
  std::size_t lf = rest.find('\n');
  if (lf == std::string_view::npos) return bad("unterminated line");
  if (lf == 0 || rest[lf - 1] != '\r') return bad("line ends with a bare LF");
  line = rest.substr(0, lf - 1);
  rest.remove_prefix(lf + 1);
  if (line.find('\r') != std::string_view::npos) return bad("bare CR in a line");
  return std::nullopt;
}

std::optional<HeadError> parse_request_line(std::string_view line, RequestHead& out) {
  std::size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return bad("malformed request line");
  std::size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return bad("request line without an HTTP version");
  out.method = line.substr(0, sp1);
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!is_token(out.method)) return bad("invalid method");
  if (out.target.empty()) return bad("empty request target");
  for (char c : out.target) {
    if (!is_target_char(static_cast<unsigned char>(c))) return bad("invalid request target");
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return bad("malformed HTTP version");
  }
  if (version == "HTTP/1.1") {
    out.version = 11;
  } else if (version == "HTTP/1.0") {
    out.version = 10;
  } else {
    return bad("unsupported HTTP version", 505);
  }
  return std::nullopt;
}

// origin-form, absolute-form (its authority replaces Host, RFC 9112 §3.2.2) or "*" for OPTIONS.
std::optional<HeadError> classify_target(RequestHead& out) {
  std::string_view target = out.target;
  if (target.front() == '/') {
    out.origin_target = target;
    return std::nullopt;
  }
  if (target == "*") {
    if (out.method != "OPTIONS") return bad("asterisk-form target outside OPTIONS");
    out.origin_target = target;
    return std::nullopt;
  }
  std::size_t scheme_end = target.find("://");
  if (scheme_end == std::string_view::npos) return bad("request target is not origin- or absolute-form");
  std::string_view scheme = target.substr(0, scheme_end);
  if (!iequals(scheme, "http") && !iequals(scheme, "https")) {
    return bad("unsupported scheme in absolute-form target");
  }
  std::string_view rest = target.substr(scheme_end + 3);
  std::size_t path_start = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_start);
  if (authority.empty() || authority.find('@') != std::string_view::npos) {
    return bad("invalid authority in absolute-form target");
  }
  for (char c : authority) {
    if (!is_host_char(static_cast<unsigned char>(c))) return bad("invalid authority");
  }
  out.host = authority;
  out.host_from_target = true;
  if (path_start == std::string_view::npos) {
    out.origin_target = "/";
  } else if (rest[path_start] == '?') {
    // "http://h?q": the origin form needs a path; the caller rebuilds "/?q".
    out.origin_target = rest.substr(path_start);
  } else {
    out.origin_target = rest.substr(path_start);
  }
  return std::nullopt;
}

std::optional<HeadError> parse_content_length(std::string_view value, RequestHead& out) {
  if (out.content_length) return bad("duplicate Content-Length");
  if (value.empty() || value.size() > 18) return bad("invalid Content-Length");
  std::uint64_t length = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return bad("invalid Content-Length");
    length = length * 10 + static_cast<std::uint64_t>(c - '0');
  }
  out.content_length = length;
  return std::nullopt;
}

}  // namespace

bool cannot_be_request(std::string_view data) {
  std::size_t i = 0;
  while (i < data.size() && (data[i] == '\r' || data[i] == '\n')) ++i;
  std::size_t method_length = 0;
  for (; i < data.size(); ++i, ++method_length) {
    if (data[i] == ' ') return method_length == 0;
    if (!kTchar[static_cast<unsigned char>(data[i])] || method_length > 32) return true;
  }
  return false;
}

std::size_t find_head_end(std::string_view data) {
  std::size_t start = 0;
  // RFC 9112 §2.2: ignore empty lines before the request line (left over after a POST body).
  while (start < data.size()) {
    if (data.compare(start, 2, "\r\n") == 0) {
      start += 2;
    } else if (data[start] == '\n') {
      start += 1;
    } else {
      break;
    }
  }
  for (std::size_t lf = data.find('\n', start); lf != std::string_view::npos;
       lf = data.find('\n', lf + 1)) {
    // The head ends at an empty line: LF directly after the previous LF (optionally with CR).
    if (lf >= 1 && data[lf - 1] == '\n') return lf + 1;
    if (lf >= 2 && data[lf - 1] == '\r' && data[lf - 2] == '\n') return lf + 1;
  }
  return 0;
}

std::optional<HeadError> parse_request_head(std::string_view head, RequestHead& out,
                                            std::size_t max_fields) {
  out = RequestHead{};
  out.head_size = head.size();
  while (head.starts_with("\r\n")) head.remove_prefix(2);
  if (head.starts_with("\n")) return bad("line ends with a bare LF");

  std::string_view line;
  if (auto error = take_line(head, line)) return error;
  if (auto error = parse_request_line(line, out)) return error;
  // A reverse proxy has no tunnel to offer, and a backend that honoured a forwarded CONNECT
  // would turn a pooled upstream connection into one.
  if (out.method == "CONNECT") return bad("CONNECT is not supported", 501);
  if (auto error = classify_target(out)) return error;

  bool saw_host = false;
  bool saw_user_agent = false;
  int transfer_encoding_fields = 0;
  bool unsupported_coding = false;
  std::string_view upgrade_value;
  std::string_view connection_values[8];
  std::size_t connection_count = 0;
  while (true) {
    if (auto error = take_line(head, line)) return error;
    if (line.empty()) break;
    if (line.front() == ' ' || line.front() == '\t') return bad("obsolete line folding");
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return bad("header line without a colon");
    std::string_view name = line.substr(0, colon);
    if (!is_token(name)) return bad("invalid header name");
    std::string_view raw_value = line.substr(colon + 1);
    for (char c : raw_value) {
      if (!is_field_value_char(static_cast<unsigned char>(c))) {
        return bad("control character in a header value");
      }
    }
    std::string_view value = trim_ows(raw_value);
    if (out.headers.size() >= max_fields) return bad("too many header fields", 431);
    out.headers.push_back(HeaderField{name, value});

    if (iequals(name, "host")) {
      if (saw_host) return bad("duplicate Host");
      saw_host = true;
      for (char c : value) {
        if (!is_host_char(static_cast<unsigned char>(c))) return bad("invalid Host");
      }
      if (!out.host_from_target) out.host = value;
    } else if (iequals(name, "content-length")) {
      if (auto error = parse_content_length(value, out)) return error;
    } else if (iequals(name, "transfer-encoding")) {
      ++transfer_encoding_fields;
      if (is_other_coding_then_chunked(value)) {
        // Answered after the framing checks below, which take precedence (they close too).
        unsupported_coding = true;
      } else if (!iequals(value, "chunked")) {
        return bad("unsupported Transfer-Encoding");
      }
      out.chunked = true;
    } else if (iequals(name, "proxy-connection")) {
      // Not standard, but Beast checks it as a token list: so do we, before forwarding anything.
      if (!is_token_list(value)) return bad("invalid Proxy-Connection");
    } else if (iequals(name, "connection")) {
      if (!is_token_list(value)) return bad("invalid Connection");
      if (connection_count == std::size(connection_values)) return bad("too many Connection fields");
      connection_values[connection_count++] = value;
    } else if (iequals(name, "expect")) {
      if (!iequals(value, "100-continue")) return bad("unsupported expectation", 417);
      out.expect_continue = true;
    } else if (iequals(name, "upgrade")) {
      upgrade_value = value;
    } else if (iequals(name, "user-agent")) {
      // A singleton field; two of them would let a crawler show the rules one and the site
      // another.
      if (saw_user_agent) return bad("duplicate User-Agent");
      saw_user_agent = true;
    }
  }
  if (!head.empty()) return bad("bytes after the end of the head");

  if (transfer_encoding_fields > 1) return bad("duplicate Transfer-Encoding");
  if (out.chunked && out.version == 10) return bad("Transfer-Encoding in an HTTP/1.0 request");
  if (out.chunked && out.content_length) return bad("both Content-Length and Transfer-Encoding");
  if (out.version == 11 && !saw_host) return bad("missing Host");
  if (unsupported_coding) return bad("unsupported transfer coding", 501);

  for (std::size_t i = 0; i < connection_count; ++i) {
    for_each_list_element(connection_values[i], [&](std::string_view token) {
      if (iequals(token, "close")) {
        out.connection_close = true;
      } else if (iequals(token, "keep-alive")) {
        out.connection_keep_alive = true;
      } else if (iequals(token, "upgrade")) {
        // WebSocket only. Any other protocol (h2c) is dropped with the hop-by-hop fields: a
        // backend that switched to it would give the client a tunnel past every rule.
        out.connection_upgrade = iequals(upgrade_value, "websocket");
      }
      out.connection_tokens.push_back(token);
    });
  }
  return std::nullopt;
}

}  // namespace crawlgate::proxy
