// The reverse proxy: listeners, I/O threads, snapshot publication, graceful shutdown.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "crawlgate/proxy/access_log.h"
#include "crawlgate/proxy/pipeline.h"

namespace crawlgate::proxy {

// Plain counters the metrics module reads; relaxed atomics, one cache line each would be overkill.
struct ServerStats {
  std::atomic<std::uint64_t> connections_accepted{0};
  std::atomic<std::uint64_t> connections_rejected{0};  // over max_connections
  std::atomic<std::uint64_t> connections_rejected_per_address{0};  // over the per-address cap
  std::atomic<std::int64_t> connections_open{0};
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> local_responses{0};
  std::atomic<std::uint64_t> bad_requests{0};  // framing errors, 4xx written by crawlgate itself
  std::atomic<std::uint64_t> upstream_connect_errors{0};
  std::atomic<std::uint64_t> upstream_timeouts{0};
  std::atomic<std::uint64_t> upstream_errors{0};  // invalid or missing response
  std::atomic<std::uint64_t> upstream_resets{0};  // failed after the response head went out
  std::atomic<std::uint64_t> upstream_reused{0};
  std::atomic<std::uint64_t> websocket_tunnels{0};
};

class ThrottleState;

class Server {
 public:
  // `initial` supplies the listen address, threads and access-log settings for the whole run;
  // later snapshots may change everything else.
  explicit Server(std::shared_ptr<const Snapshot> initial);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the public and admin listeners and starts the I/O threads. Throws std::runtime_error
  // naming the address on failure (address in use, permission denied).
  void start();
  // Installs SIGTERM/SIGINT (graceful shutdown), SIGHUP (reload handler) and SIGUSR1 (reopen
  // logs). Only the binary calls this; tests drive the same paths directly.
  void handle_signals();
  // Blocks until every I/O thread has finished.
  void wait();
  // Stops accepting, lets in-flight requests finish within shutdown_grace, then stops.
  void shutdown();

  uint16_t port() const;
  uint16_t admin_port() const;

  void publish(std::shared_ptr<const Snapshot> snapshot);
  std::shared_ptr<const Snapshot> snapshot() const;
  std::uint64_t next_generation() const;

  // Called (off the I/O threads) on SIGHUP and POST /-/reload; returns a message for the
  // operator. The binary sets it to "re-read the config file and publish".
  void set_reload_handler(std::function<std::string(bool& ok)> handler);
  // Enables /metrics and per-request recording; call before start(). Registers the server's own
  // pulled values (connections, upstream errors, access log) with it.
  void set_metrics(std::shared_ptr<metrics::Metrics> metrics);
  metrics::Metrics* metrics() const;
  // The limits' client table, shown by GET /clients/<ip> on the admin listener.
  void set_throttle_state(std::shared_ptr<ThrottleState> state);

  AccessLog& access_log();
  const ServerStats& stats() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace crawlgate::proxy
