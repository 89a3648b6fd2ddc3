// Internals shared by server.cpp, session.cpp and admin.cpp.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <array>
#include <optional>
#include <unordered_map>
#include <thread>
#include <unordered_set>
#include <vector>

#include "crawlgate/proxy/server.h"
#include "crawlgate/proxy/throttle_stage.h"
#include "decision_log.h"
#include "redis_limiter.h"
#include "upstream_pool.h"

namespace crawlgate::proxy {

class Session;

// The throttle stage's view of this worker's Redis connection.
class RedisSharedLimiter final : public SharedLimiter {
 public:
  explicit RedisSharedLimiter(std::shared_ptr<RedisLimiter> redis) : redis_(std::move(redis)) {}
  void check(const std::string& key, const RateLimit& limit, double cost,
             std::function<void(std::optional<Result>)> done) override {
    redis_->check(RedisLimitRequest{key, limit.rate_per_second, limit.burst, cost},
                  [done = std::move(done)](std::optional<RedisLimitResult> result) {
                    if (!result) return done(std::nullopt);
                    done(Result{result->allowed, result->retry_after_seconds, result->remaining});
                  });
  }
  RedisLimiter& redis() { return *redis_; }

 private:
  std::shared_ptr<RedisLimiter> redis_;
};

// One I/O thread with its own io_context. A connection lives on one worker for its whole life,
// so its handlers never run concurrently (the worker is its strand), and the upstream pool and
// the session registry need no locks.
struct Worker {
  // Declared before the io_context: sessions still queued when it is destroyed erase
  // themselves from this set.
  std::unordered_set<Session*> sessions;  // this worker's thread only
  net::io_context ioc{1};
  UpstreamPool pool{ioc};
  std::unique_ptr<RedisSharedLimiter> redis;  // with `redis:` configured
  DecisionLog decisions;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> guard;
  std::thread thread;
};

// Open connections per client address, for limits.max_connections_per_address. Touched twice
// per connection (accept, close), from any I/O thread: sharded to keep the locks uncontended.
class AddressCounter {
 public:
  // Counts the connection and returns true, or returns false (uncounted) when `max` is reached.
  bool try_add(const IpAddress& address, std::size_t max);
  void remove(const IpAddress& address);

 private:
  struct Hash {
    std::size_t operator()(const IpAddress& address) const;
  };
  struct alignas(64) Shard {
    std::mutex mutex;
    std::unordered_map<IpAddress, std::uint32_t, Hash> counts;
  };
  Shard& shard(const IpAddress& address) { return shards_[Hash{}(address) % shards_.size()]; }
  std::array<Shard, 16> shards_;
};

// Runs jobs that must stay off the I/O threads (config reloads) one at a time, in order.
class ControlThread {
 public:
  ControlThread();
  ~ControlThread();
  void submit(std::function<void()> job);

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

struct Server::Impl {
  explicit Impl(std::shared_ptr<const Snapshot> initial);

  Worker& pick_worker();
  void do_accept();
  void do_accept_admin();
  void begin_shutdown();
  void on_session_closed();
  void request_reload(std::function<void(bool ok, std::string message)> done);
  void stop_all();
  void wait_for_signal();

  std::shared_ptr<const Snapshot> load_snapshot() const {
    return current.load(std::memory_order_acquire);
  }

  std::shared_ptr<const Snapshot> initial;
  std::atomic<std::shared_ptr<const Snapshot>> current;
  std::vector<std::unique_ptr<Worker>> workers;
  std::optional<tcp::acceptor> acceptor;
  std::optional<tcp::acceptor> admin_acceptor;
  std::optional<net::signal_set> signals;
  std::atomic<std::size_t> next_worker{0};
  uint16_t port = 0;
  uint16_t admin_port = 0;
  std::atomic<bool> draining{false};
  std::atomic<bool> stopped{false};
  ServerStats stats;
  AddressCounter connections_by_address;
  AccessLog access_log;
  std::function<std::string(bool&)> reload_handler;
  std::shared_ptr<metrics::Metrics> metrics;
  std::shared_ptr<ThrottleState> throttle;  // for /clients/<ip>; null without limits
  std::mutex handler_mutex;  // guards the two handlers above against set-while-running

  std::mutex grace_mutex;
  std::condition_variable grace_cv;
  std::thread grace_thread;
  std::unique_ptr<ControlThread> control;
};

// An Asio address as crawlgate's IpAddress (IPv4-mapped IPv6 peers become IPv4).
IpAddress to_ip_address(const net::ip::address& address);

// Starts a client session on `worker`'s thread.
// `counted` is the address counted in connections_by_address, released when the session ends.
void start_session(Server::Impl& server, Worker& worker, tcp::socket socket,
                   std::optional<IpAddress> counted);
// Closes an idle keep-alive session, or marks a busy one to close after its response.
void drain_session(Session* session);
// Starts an admin-listener session (/healthz, /readyz, /metrics, POST /-/reload).
void start_admin_session(Server::Impl& server, tcp::socket socket);

}  // namespace crawlgate::proxy
