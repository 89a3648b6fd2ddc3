// Shared GCRA limits in Redis (docs/config.md, "Limits", `redis:`), so that several crawlgate
// instances spend one budget per key. One RedisLimiter per I/O worker, living on that worker's
// single-threaded io_context: nothing inside is locked, and every handler runs on that thread.
//
// The hiredis async API (0.14.1, no Asio adapter) is driven through a posix::stream_descriptor
// on the hiredis socket. A check waits at most `budget` for Redis; when Redis is down, slow or
// answers an error the check answers std::nullopt and the caller decides with its local limiter.
#pragma once

#include <utility>  // before Asio (GCC 12)
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

struct redisAsyncContext;  // hiredis (global namespace), kept out of this header

namespace crawlgate::proxy {

struct RedisLimitRequest {
  std::string key;  // without the prefix
  double rate_per_second = 0;
  double burst = 0;
  double cost = 1;
};

struct RedisLimitResult {
  bool allowed = false;
  double retry_after_seconds = 0;  // > 0 only when refused
  double remaining = 0;            // whole requests of cost 1 still allowed at once
  double reset_after_seconds = 0;  // until the key is back to a full burst
};

struct RedisOptions {
  std::string host = "127.0.0.1";  // an IP literal, or a name resolved asynchronously
  uint16_t port = 6379;
  std::chrono::milliseconds budget{2};  // a check waits at most this long for its reply
  // TCP connect + SCRIPT LOAD must finish within this; a connection with a command unanswered
  // for longer than this is considered hung and is reset.
  std::chrono::milliseconds connect_timeout{1000};
  std::string key_prefix = "crawlgate:";
  std::chrono::milliseconds reconnect_backoff{500};      // first retry; doubles per failure
  std::chrono::milliseconds reconnect_backoff_max{5000};  // ... up to this
  std::size_t max_pending = 10000;  // commands in flight; beyond, checks answer nullopt at once
};

class RedisLimiter : public std::enable_shared_from_this<RedisLimiter> {
 public:
  // Create with std::make_shared. The limiter may be destroyed without stop(); it must be
  // destroyed before its io_context, on that io_context's thread or while it is not running.
  RedisLimiter(boost::asio::io_context& ioc, RedisOptions options);
  ~RedisLimiter();
  RedisLimiter(const RedisLimiter&) = delete;
  RedisLimiter& operator=(const RedisLimiter&) = delete;

  // Connects in the background; never blocks. Runs on the io_context (dispatch).
  void start();
  // Closes the connection and answers every pending check with nullopt; no reconnect after.
  // Runs on the io_context (dispatch).
  void stop();

  // Runs the GCRA script atomically in Redis. `done` is called exactly once, always through
  // the io_context (never inline): with the result, or with std::nullopt when Redis is down,
  // slow (no reply within options.budget), over max_pending or answers an error.
  // Call on the io_context's thread.
  void check(const RedisLimitRequest& request,
             std::function<void(std::optional<RedisLimitResult>)> done);

  // These may be read from any thread (metrics).
  bool connected() const { return ready_.load(std::memory_order_relaxed); }
  std::uint64_t fallbacks() const { return fallbacks_.load(std::memory_order_relaxed); }
  // Connections established again after a failure or a loss (down -> up transitions).
  std::uint64_t reconnects() const { return reconnects_.load(std::memory_order_relaxed); }
  // SCRIPT LOADs sent because EVALSHA answered NOSCRIPT (script cache flushed, failover).
  std::uint64_t script_reloads() const { return script_reloads_.load(std::memory_order_relaxed); }

  const RedisOptions& options() const { return options_; }
  // The Lua script (KEYS[1] = key; ARGV = T, tau, cost*T in microseconds).
  static const char* script();

 private:
  struct Connection;
  struct Pending;
  struct Call;
  enum class State { kIdle, kResolving, kConnecting, kLoading, kReady, kBackoff, kStopped };
  enum class Health { kUnknown, kUp, kDown };

  // hiredis callbacks and event hooks (static trampolines, see redis_limiter.cpp).
  static void on_connect_cb(const ::redisAsyncContext* ac, int status);
  static void on_disconnect_cb(const ::redisAsyncContext* ac, int status);
  static void on_reply_cb(::redisAsyncContext* ac, void* reply, void* privdata);

  void do_start();
  void do_stop();
  void begin_connect();
  void connect_to(const std::string& ip);
  void connect_failed(const std::string& reason);
  void on_connect_timeout(std::uint64_t attempt);
  void on_connected(const std::shared_ptr<Connection>& conn);
  void on_ready(const std::shared_ptr<Connection>& conn);
  void on_connection_lost(Connection* conn, const std::string& reason);
  void reset_connection(const std::shared_ptr<Connection>& conn, const std::string& reason);
  void schedule_reconnect();
  void free_connection(const std::shared_ptr<Connection>& conn);
  void retire_connection();

  bool send_eval(Connection& conn, const std::shared_ptr<Pending>& p);
  bool send_script_load(Connection& conn, bool after_noscript);
  void on_eval_reply(Connection& conn, const std::shared_ptr<Pending>& p, void* reply);
  void on_load_reply(Connection& conn, void* reply);

  void arm_deadline();
  void on_deadline();
  void finish(Pending& p, std::optional<RedisLimitResult> result);
  void answer_now(std::function<void(std::optional<RedisLimitResult>)> done);
  void fail_all_pending();

  void mark_up();
  void mark_down(const std::string& reason);

  boost::asio::io_context& ioc_;
  RedisOptions options_;
  std::string endpoint_;  // "host:port", for log lines
  State state_ = State::kIdle;
  Health health_ = Health::kUnknown;
  std::shared_ptr<Connection> conn_;
  std::string sha_;  // of script(), known after the first SCRIPT LOAD
  std::chrono::milliseconds backoff_;
  std::uint64_t attempt_ = 0;  // connection attempts; a stale connect-timer expiry is ignored
  boost::asio::steady_timer connect_timer_;
  boost::asio::steady_timer backoff_timer_;
  boost::asio::steady_timer deadline_timer_;
  bool deadline_armed_ = false;
  boost::asio::ip::tcp::resolver resolver_;
  // Checks waiting for a reply, in submission order: all share one budget, so their deadlines
  // are in this order too and one timer serves them all. Finished entries are dropped lazily.
  std::deque<std::shared_ptr<Pending>> pending_;
  std::size_t in_flight_ = 0;  // commands handed to hiredis whose callback has not run yet

  std::atomic<bool> ready_{false};
  std::atomic<std::uint64_t> fallbacks_{0};
  std::atomic<std::uint64_t> reconnects_{0};
  std::atomic<std::uint64_t> script_reloads_{0};
};

}  // namespace crawlgate::proxy
