// Server-side settings: where crawlgate listens, what it protects, and its limits. Parsed from
// the top-level keys of the YAML config (docs/config.md) and overridden by command-line flags.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "crawlgate/rules/ip_address.h"

namespace crawlgate {

using Millis = std::chrono::milliseconds;

struct HostPort {
  std::string host;  // "127.0.0.1", "::1", "localhost"
  uint16_t port = 0;
  // "HOST:PORT", "[V6]:PORT". Returns false and fills `error` on bad input.
  static bool parse(std::string_view text, HostPort& out, std::string& error);
  std::string to_string() const;
};

struct UpstreamSettings {
  HostPort address{"127.0.0.1", 8081};
  // The Host header crawlgate sends is the client's; this is only used when the client sent none
  // (HTTP/1.0).
  std::size_t pool_max_idle = 64;       // idle keep-alive connections kept, per I/O thread
  Millis pool_idle_timeout{30'000};     // an idle upstream connection older than this is closed
  Millis connect_timeout{5'000};        // -> 502
  Millis response_timeout{60'000};      // time to the response header, and between body reads -> 504
  // Parses "http://HOST:PORT" (no path; https belongs to a TLS terminator in front).
  static bool parse_url(std::string_view url, HostPort& out, std::string& error);
};

struct LimitSettings {
  std::size_t max_header_bytes = 16 * 1024;           // request line + headers -> 431
  std::uint64_t max_body_bytes = 100ull * 1024 * 1024;  // request body -> 413; 0 = unlimited
  std::size_t max_connections = 10'000;               // concurrent client connections
  std::size_t max_response_header_bytes = 64 * 1024;  // from the upstream -> 502
  // Concurrent connections from one address (trusted proxies exempt) -> 429 and close; 0 = off.
  std::size_t max_connections_per_address = 256;
  // Slow POST: once a body has been arriving for timeouts.body_read, it must average at least
  // this many bytes per second -> 408 and close; 0 = off.
  std::uint64_t min_body_rate = 512;
};

struct TimeoutSettings {
  Millis header_read{10'000};     // whole request header, from its first byte -> 408 and close
  Millis idle_keepalive{60'000};  // between requests on a kept-alive client connection
  Millis body_read{30'000};       // between request-body reads (slow POST)
  Millis client_write{30'000};    // between response writes to a client that stopped reading
  Millis shutdown_grace{10'000};  // SIGTERM: in-flight requests may finish within this
};

enum class AccessLogFormat { kJsonLines, kCombined };

struct AccessLogSettings {
  std::string path;  // "" = off, "-" = stdout
  AccessLogFormat format = AccessLogFormat::kJsonLines;
  bool headers = true;        // JSON lines only: include request headers
  bool anonymize_ip = false;  // truncate client IPs to /24 (IPv4) and /48 (IPv6)
  std::size_t queue_max = 65'536;  // lines buffered for the writer thread; beyond, lines drop
};

// The trivial pipeline stage of the proxy core: a fixed answer for an exact path.
struct StaticResponseSettings {
  std::string path;  // exact match on the target's path
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

enum class WebSocketPolicy { kTunnel, kRefuse };

// `throttle:` — process-wide limits of the throttling stage (docs/config.md, "Limits").
struct ThrottleSettings {
  std::size_t client_table_size = 1'000'000;  // tracked client keys; least recently seen evicted
  std::size_t max_tarpitted = 1000;           // concurrent held responses; beyond, 429 at once
  Millis tarpit_delay{10'000};                // how long `tarpit` holds an over-limit answer
};

// `redis:` — optional shared counters. The block's presence enables it unless `enabled: false`.
struct RedisSettings {
  bool enabled = false;
  HostPort address{"127.0.0.1", 6379};
  Millis budget{2};  // a request waits at most this long for Redis, then decides locally
  std::string key_prefix = "crawlgate:";
  Millis connect_timeout{1000};
};

struct ServerSettings {
  HostPort listen{"127.0.0.1", 8080};
  HostPort admin{"127.0.0.1", 9464};
  UpstreamSettings upstream;
  std::vector<Cidr> trusted_proxies;
  unsigned threads = 0;  // 0 = one per core
  LimitSettings limits;
  TimeoutSettings timeouts;
  AccessLogSettings access_log;
  std::vector<StaticResponseSettings> static_responses;
  WebSocketPolicy websocket = WebSocketPolicy::kTunnel;
  std::string request_id_header = "X-Request-Id";
  ThrottleSettings throttle;
  RedisSettings redis;
};

}  // namespace crawlgate
