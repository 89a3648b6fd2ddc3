// Strict RFC 9112 parsing of a request head (request line + header fields). Beast 1.74's parser
// accepts obs-fold, "chunked, gzip", duplicate Content-Length and a missing Host; a proxy that
// forwards what its backend may frame differently invites request smuggling. Every head is checked
// here, byte by byte, before anything is forwarded. Boost-free so it can be fuzzed and reused.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crawlgate/rules/request_view.h"

namespace crawlgate::proxy {

struct RequestHead {
  std::string_view method;
  std::string_view target;         // as sent
  std::string_view origin_target;  // origin-form path?query (absolute-form reduced to it)
  int version = 11;
  std::vector<HeaderField> headers;  // in order, values without surrounding whitespace
  std::string_view host;             // Host header, or the authority of an absolute-form target
  bool host_from_target = false;
  std::optional<std::uint64_t> content_length;
  bool chunked = false;
  bool expect_continue = false;
  bool connection_close = false;
  bool connection_keep_alive = false;
  bool connection_upgrade = false;  // "Connection: upgrade" together with "Upgrade: websocket"
  std::vector<std::string_view> connection_tokens;  // names a client marked hop-by-hop
  std::size_t head_size = 0;  // bytes of the head including the final empty line

  bool has_body() const { return chunked || (content_length && *content_length > 0); }
  bool keep_alive() const {
    return version >= 11 ? !connection_close : (connection_keep_alive && !connection_close);
  }
};

struct HeadError {
  int status = 400;    // 400, 417, 431, 501 or 505
  std::string reason;  // for the log and the error page; never echoes raw client bytes
};

// Finds the end of a head in `data`: returns the size including the terminating empty line, or 0
// when more bytes are needed. A lone LF line end counts, so that the parser can reject it instead
// of waiting for a CRLF that never comes. Leading empty lines (RFC 9112 §2.2) are skipped.
std::size_t find_head_end(std::string_view data);

// True when `data`, the start of a head still incomplete, can no longer become a request line:
// a byte that is not a method character before the first space (a TLS ClientHello, say).
bool cannot_be_request(std::string_view data);

// Parses and validates `head` (exactly the bytes find_head_end measured). `max_fields` caps the
// number of header fields (-> 431).
std::optional<HeadError> parse_request_head(std::string_view head, RequestHead& out,
                                            std::size_t max_fields = 128);

}  // namespace crawlgate::proxy
