// The read-only view of one request that every pipeline stage sees. It holds no Boost type, so
// rules and classifier code is testable and benchmarkable without sockets.
#pragma once

#include <chrono>
#include <cstddef>
#include <span>
#include <string_view>

#include "crawlgate/rules/ip_address.h"

namespace crawlgate {

struct HeaderField {
  std::string_view name;
  std::string_view value;
};

// ASCII case-insensitive equality: only the letters A-Z / a-z fold (HTTP field names). Inline: the
// rules stage compares header names per request field.
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto x = static_cast<unsigned char>(a[i]);
    auto y = static_cast<unsigned char>(b[i]);
    if (x == y) continue;
    unsigned char lower = x | 0x20;
    if (lower != (y | 0x20) || lower < 'a' || lower > 'z') return false;
  }
  return true;
}

struct RequestView {
  std::string_view method;
  std::string_view target;
  int version = 11;                  // 10 for HTTP/1.0, 11 for HTTP/1.1
  std::span<const HeaderField> headers;  // in the order the client sent them
  IpAddress client_ip;               // peer, or the XFF address when the peer is trusted
  IpAddress peer_ip;                 // the socket peer
  std::chrono::system_clock::time_point now;

  // First header with this name (case-insensitive), or an empty view when absent.
  std::string_view header(std::string_view name) const;
  bool has_header(std::string_view name) const;
  // The target without its query string.
  std::string_view path() const;
};

}  // namespace crawlgate
