#include "redis_limiter.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <string_view>

namespace crawlgate::proxy {

namespace net = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// GCRA (docs/config.md, "Limits"), all times in microseconds with the clock of Redis (TIME), so
// every instance shares one clock. T = 1/rate, tau = burst*T; new_tat = max(tat, now) + cost*T;
// allowed iff new_tat - now <= tau (then stored). The TAT is stored with %.17g: Lua's tostring
// keeps 14 digits, which would round an epoch in microseconds (16 digits) by up to 100 us.
// The 1 us slack absorbs the rounding of summed fractional intervals (rate 3/s, burst 3).
// Returns {allowed 0|1, retry_after us, remaining, reset_after us} as integers.
constexpr const char* kScript = R"lua(
if redis.replicate_commands then pcall(redis.replicate_commands) end
local key = KEYS[1]
local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local inc = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', key))
if not tat or tat < now then tat = now end
local new_tat = tat + inc
local allowed = 0
local retry = 0
if new_tat - now <= tau + 1 then
  allowed = 1
  tat = new_tat
  local ttl = math.ceil((tat - now) / 1000)
  if ttl < 1 then ttl = 1 end
  redis.call('SET', key, string.format('%.17g', tat), 'PX', ttl)
else
  retry = new_tat - now - tau
end
local remaining = math.floor((tau - (tat - now)) / T + 1e-9)
if remaining < 0 then remaining = 0 end
return {allowed, math.ceil(retry), remaining, math.ceil(tat - now)}
)lua";

std::string format_number(double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.17g", v);
  return buffer;
}

}  // namespace

// One hiredis connection and the stream_descriptor that watches its socket. It outlives the
// redisAsyncContext: Asio wait handlers hold it by shared_ptr, and `ac` turns null when hiredis
// runs the cleanup hook (just before it frees the context and closes the socket). A handler that
// finds `ac` null does nothing, so no handler ever touches a freed context, and a handler of an
// old connection can never act on a newer one.
struct RedisLimiter::Connection : std::enable_shared_from_this<Connection> {
  explicit Connection(net::io_context& ioc) : sd(ioc) {}

  RedisLimiter* owner = nullptr;  // valid while `ac` is non-null (the limiter frees `ac` first)
  redisAsyncContext* ac = nullptr;
  net::posix::stream_descriptor sd;
  bool want_read = false;
  bool want_write = false;
  bool read_waiting = false;
  bool write_waiting = false;
  bool closing = false;  // we called redisAsyncFree: its callbacks must not start a reconnect
  std::uint64_t seq = 0;            // commands sent on this connection
  std::uint64_t last_load_seq = 0;  // seq of the last SCRIPT LOAD sent
  std::deque<Clock::time_point> sent;  // send times of unanswered commands, oldest first

  static void add_read(void* data) {
    auto* self = static_cast<Connection*>(data);
    self->want_read = true;
    self->arm(true);
  }
  static void del_read(void* data) { static_cast<Connection*>(data)->want_read = false; }
  static void add_write(void* data) {
    auto* self = static_cast<Connection*>(data);
    self->want_write = true;
    self->arm(false);
  }
  static void del_write(void* data) { static_cast<Connection*>(data)->want_write = false; }
  // Called by hiredis right before it frees the context and close()s the socket: take the
  // descriptor out of epoll and give it back without closing it (hiredis closes it; closing it
  // here too could close a newer socket that reused the number).
  static void cleanup(void* data) {
    auto* self = static_cast<Connection*>(data);
    self->ac = nullptr;
    self->want_read = self->want_write = false;
    boost::system::error_code ignored;
    self->sd.cancel(ignored);
    if (self->sd.is_open()) self->sd.release();
  }

  // Hooks are idempotent: at most one wait per direction; "del" only clears the wish, and a wait
  // that completes without the wish does nothing. Asio's epoll reactor re-arms the descriptor
  // (EPOLL_CTL_MOD) when a wait starts, so readiness that predates the wait is not lost.
  void arm(bool read) {
    bool& waiting = read ? read_waiting : write_waiting;
    if (waiting || ac == nullptr || !sd.is_open()) return;
    waiting = true;
    sd.async_wait(read ? net::posix::stream_descriptor::wait_read
                       : net::posix::stream_descriptor::wait_write,
                  [conn = shared_from_this(), read](const boost::system::error_code& ec) {
                    (read ? conn->read_waiting : conn->write_waiting) = false;
                    if (ec == net::error::operation_aborted || conn->ac == nullptr) return;
                    if (!(read ? conn->want_read : conn->want_write)) return;
                    // May free the context (cleanup runs); do not touch conn->ac after this.
                    if (read) {
                      redisAsyncHandleRead(conn->ac);
                    } else {
                      redisAsyncHandleWrite(conn->ac);
                    }
                  });
  }
};

struct RedisLimiter::Pending {
  std::string key;  // with the prefix
  std::string args[3];  // T, tau, cost*T in microseconds
  std::function<void(std::optional<RedisLimitResult>)> done;
  Clock::time_point deadline;
  bool finished = false;  // done has been posted (reply, deadline, stop)
  bool retried = false;   // NOSCRIPT retry used
  std::uint64_t sent_seq = 0;
};

// privdata of one hiredis command: an EVALSHA (pending set) or a SCRIPT LOAD. hiredis calls the
// reply callback exactly once per accepted command: with the reply, or with NULL when the context
// is freed (error, disconnect, redisAsyncFree); the callback deletes this.
struct RedisLimiter::Call {
  std::shared_ptr<Pending> pending;
};

const char* RedisLimiter::script() { return kScript; }

RedisLimiter::RedisLimiter(net::io_context& ioc, RedisOptions options)
    : ioc_(ioc),
      options_(std::move(options)),
      backoff_(options_.reconnect_backoff),
      connect_timer_(ioc),
      backoff_timer_(ioc),
      deadline_timer_(ioc),
      resolver_(ioc) {
  endpoint_ = options_.host + ":" + std::to_string(options_.port);
  if (options_.reconnect_backoff.count() <= 0) options_.reconnect_backoff = std::chrono::milliseconds(1);
  if (options_.reconnect_backoff_max < options_.reconnect_backoff)
    options_.reconnect_backoff_max = options_.reconnect_backoff;
  backoff_ = options_.reconnect_backoff;
}

RedisLimiter::~RedisLimiter() {
  state_ = State::kStopped;
  if (auto conn = conn_) {  // a copy: the Connection must outlive redisAsyncFree
    conn->closing = true;
    free_connection(conn);
  }
  fail_all_pending();
}

void RedisLimiter::start() {
  net::dispatch(ioc_, [self = shared_from_this()] { self->do_start(); });
}

void RedisLimiter::stop() {
  net::dispatch(ioc_, [self = shared_from_this()] { self->do_stop(); });
}

void RedisLimiter::do_start() {
  if (state_ != State::kIdle) return;
  // hiredis writes with write(2): a write to a connection Redis reset raises SIGPIPE, which
  // kills the process by default. The server ignores it too; keep any handler someone installed.
  struct sigaction current {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    std::signal(SIGPIPE, SIG_IGN);
  }
  begin_connect();
}

void RedisLimiter::do_stop() {
  if (state_ == State::kStopped) return;
  state_ = State::kStopped;
  ready_.store(false, std::memory_order_relaxed);
  connect_timer_.cancel();
  backoff_timer_.cancel();
  resolver_.cancel();
  if (auto conn = conn_) {
    conn->closing = true;
    free_connection(conn);  // in-flight commands get their callbacks with NULL -> nullopt
    conn_.reset();
  }
  fail_all_pending();
  deadline_timer_.cancel();
}

void RedisLimiter::begin_connect() {
  if (state_ == State::kStopped) return;
  const std::uint64_t attempt = ++attempt_;
  connect_timer_.expires_after(options_.connect_timeout);
  connect_timer_.async_wait(
      [weak = weak_from_this(), attempt](const boost::system::error_code& ec) {
        if (ec) return;
        if (auto self = weak.lock()) self->on_connect_timeout(attempt);
      });
  boost::system::error_code ec;
  auto address = net::ip::make_address(options_.host, ec);
  if (!ec) {
    state_ = State::kConnecting;
    connect_to(address.to_string());
    return;
  }
  // hiredis would resolve a name with a blocking getaddrinfo on this I/O thread.
  state_ = State::kResolving;
  resolver_.async_resolve(
      options_.host, std::to_string(options_.port),
      [weak = weak_from_this(), attempt](const boost::system::error_code& ec,
                                         net::ip::tcp::resolver::results_type results) {
        auto self = weak.lock();
        if (!self || self->attempt_ != attempt || self->state_ != State::kResolving) return;
        if (ec || results.empty()) {
          self->connect_failed("cannot resolve " + self->options_.host + ": " +
                               (ec ? ec.message() : std::string("no address")));
          return;
        }
        self->state_ = State::kConnecting;
        self->connect_to(results.begin()->endpoint().address().to_string());
      });
}

void RedisLimiter::connect_to(const std::string& ip) {
  redisAsyncContext* ac = redisAsyncConnect(ip.c_str(), options_.port);  // non-blocking
  if (ac == nullptr) {
    connect_failed("cannot allocate a hiredis context");
    return;
  }
  if (ac->err) {
    std::string reason = ac->errstr ? ac->errstr : "connect failed";
    redisAsyncFree(ac);  // no hooks attached yet: hiredis just closes its socket
    connect_failed(reason);
    return;
  }
  auto conn = std::make_shared<Connection>(ioc_);
  boost::system::error_code ec;
  conn->sd.assign(ac->c.fd, ec);
  if (ec) {
    redisAsyncFree(ac);
    connect_failed("cannot watch the hiredis socket: " + ec.message());
    return;
  }
  conn->owner = this;
  conn->ac = ac;
  ac->data = conn.get();
  ac->ev.data = conn.get();
  ac->ev.addRead = &Connection::add_read;
  ac->ev.delRead = &Connection::del_read;
  ac->ev.addWrite = &Connection::add_write;
  ac->ev.delWrite = &Connection::del_write;
  ac->ev.cleanup = &Connection::cleanup;
  conn_ = conn;
  redisAsyncSetDisconnectCallback(ac, &RedisLimiter::on_disconnect_cb);
  // Arms the first write wait: writability tells that connect(2) finished.
  redisAsyncSetConnectCallback(ac, &RedisLimiter::on_connect_cb);
}

void RedisLimiter::on_connect_cb(const redisAsyncContext* ac, int status) {
  auto* conn = static_cast<Connection*>(ac->data);
  if (conn == nullptr || conn->closing) return;
  RedisLimiter* self = conn->owner;
  if (status != REDIS_OK) {
    // hiredis frees the context when this returns: no redisAsyncFree here (double free).
    std::string reason = ac->c.errstr[0] ? ac->c.errstr : "connect failed";
    self->on_connection_lost(conn, "connect: " + reason);
    return;
  }
  self->on_connected(conn->shared_from_this());
}

void RedisLimiter::on_disconnect_cb(const redisAsyncContext* ac, int /*status*/) {
  // Runs inside hiredis's free, after the pending commands got their NULL replies and after
  // the cleanup hook; the context is freed when this returns.
  auto* conn = static_cast<Connection*>(ac->data);
  if (conn == nullptr || conn->closing) return;
  std::string reason = ac->c.errstr[0] ? ac->c.errstr : "connection closed";
  conn->owner->on_connection_lost(conn, reason);
}

void RedisLimiter::on_connected(const std::shared_ptr<Connection>& conn) {
  if (conn != conn_ || state_ != State::kConnecting) return;
  // Readiness takes one round trip: a TCP connect alone also succeeds against a stopped or
  // hung server. SCRIPT LOAD on every connection also spares the first checks a NOSCRIPT.
  state_ = State::kLoading;
  if (!send_script_load(*conn, false)) {
    net::post(ioc_, [weak = weak_from_this(), conn] {
      if (auto self = weak.lock()) self->reset_connection(conn, "cannot send SCRIPT LOAD");
    });
  }
}

void RedisLimiter::on_ready(const std::shared_ptr<Connection>& conn) {
  if (conn != conn_ || state_ != State::kLoading) return;
  state_ = State::kReady;
  connect_timer_.cancel();
  backoff_ = options_.reconnect_backoff;
  ready_.store(true, std::memory_order_relaxed);
  mark_up();
}

void RedisLimiter::on_connection_lost(Connection* conn, const std::string& reason) {
  if (conn != conn_.get() || state_ == State::kStopped) return;
  retire_connection();
  connect_failed(reason);
}

void RedisLimiter::connect_failed(const std::string& reason) {
  if (state_ == State::kStopped) return;
  connect_timer_.cancel();
  ready_.store(false, std::memory_order_relaxed);
  mark_down(reason);
  schedule_reconnect();
}

void RedisLimiter::on_connect_timeout(std::uint64_t attempt) {
  if (attempt != attempt_) return;
  const std::string reason =
      "no answer within the connect timeout (" + std::to_string(options_.connect_timeout.count()) +
      " ms)";
  if (state_ == State::kResolving) {
    resolver_.cancel();
    connect_failed(reason);
  } else if ((state_ == State::kConnecting || state_ == State::kLoading) && conn_) {
    reset_connection(conn_, reason);
  }
}

// Only outside hiredis callbacks (from a timer or a posted handler): frees the context now.
void RedisLimiter::reset_connection(const std::shared_ptr<Connection>& conn_in,
                                    const std::string& reason) {
  std::shared_ptr<Connection> conn = conn_in;  // conn_in may be conn_ itself, reset below
  if (!conn || conn != conn_ || state_ == State::kStopped) return;
  conn->closing = true;
  free_connection(conn);
  on_connection_lost(conn.get(), reason);
}

void RedisLimiter::free_connection(const std::shared_ptr<Connection>& conn) {
  if (conn->ac != nullptr) redisAsyncFree(conn->ac);  // NULL replies, cleanup hook, disconnect
}

// Drops conn_ without destroying the Connection inside a hiredis callback: the cleanup hook may
// still run on it (hiredis frees the context after the callback returns).
void RedisLimiter::retire_connection() {
  if (!conn_) return;
  net::post(ioc_, [retired = std::move(conn_)] {});
  conn_.reset();
}

void RedisLimiter::schedule_reconnect() {
  if (state_ == State::kStopped) return;
  state_ = State::kBackoff;
  backoff_timer_.expires_after(backoff_);
  backoff_ = std::min(backoff_ * 2, options_.reconnect_backoff_max);
  backoff_timer_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    if (ec) return;
    auto self = weak.lock();
    if (self && self->state_ == State::kBackoff) self->begin_connect();
  });
}

void RedisLimiter::mark_up() {
  if (health_ == Health::kUp) return;
  if (health_ == Health::kDown) {
    reconnects_.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr, "crawlgate: redis %s is up again; shared limits resumed\n",
                 endpoint_.c_str());
  } else {
    std::fprintf(stderr, "crawlgate: redis %s connected\n", endpoint_.c_str());
  }
  health_ = Health::kUp;
}

void RedisLimiter::mark_down(const std::string& reason) {
  if (health_ == Health::kDown) return;
  health_ = Health::kDown;
  std::fprintf(stderr, "crawlgate: redis %s is down (%s); limits fall back to local counters\n",
               endpoint_.c_str(), reason.c_str());
}

void RedisLimiter::check(const RedisLimitRequest& request,
                         std::function<void(std::optional<RedisLimitResult>)> done) {
  if (!done) return;
  if (state_ != State::kReady || !conn_ || conn_->ac == nullptr ||
      in_flight_ >= options_.max_pending || !std::isfinite(request.rate_per_second) ||
      request.rate_per_second <= 0 || !std::isfinite(request.burst) || request.burst < 0 ||
      !std::isfinite(request.cost) || request.cost < 0) {
    answer_now(std::move(done));
    return;
  }
  auto p = std::make_shared<Pending>();
  p->key = options_.key_prefix + request.key;
  const double interval_us = 1e6 / request.rate_per_second;
  p->args[0] = format_number(interval_us);
  p->args[1] = format_number(request.burst * interval_us);
  p->args[2] = format_number(request.cost * interval_us);
  p->deadline = Clock::now() + options_.budget;
  p->done = std::move(done);
  if (!send_eval(*conn_, p)) {
    answer_now(std::move(p->done));
    return;
  }
  pending_.push_back(std::move(p));
  arm_deadline();
}

bool RedisLimiter::send_eval(Connection& conn, const std::shared_ptr<Pending>& p) {
  if (conn.ac == nullptr || sha_.empty()) return false;
  const char* argv[7] = {"EVALSHA", sha_.c_str(), "1", p->key.c_str(),
                         p->args[0].c_str(), p->args[1].c_str(), p->args[2].c_str()};
  const size_t lengths[7] = {7, sha_.size(), 1, p->key.size(),
                             p->args[0].size(), p->args[1].size(), p->args[2].size()};
  auto* call = new Call{p};
  if (redisAsyncCommandArgv(conn.ac, &RedisLimiter::on_reply_cb, call, 7, argv, lengths) !=
      REDIS_OK) {
    delete call;  // not queued: hiredis will never call back for it
    return false;
  }
  ++in_flight_;
  conn.sent.push_back(Clock::now());
  p->sent_seq = ++conn.seq;
  return true;
}

bool RedisLimiter::send_script_load(Connection& conn, bool after_noscript) {
  if (conn.ac == nullptr) return false;
  const char* argv[3] = {"SCRIPT", "LOAD", kScript};
  const size_t lengths[3] = {6, 4, std::char_traits<char>::length(kScript)};
  auto* call = new Call{};
  if (redisAsyncCommandArgv(conn.ac, &RedisLimiter::on_reply_cb, call, 3, argv, lengths) !=
      REDIS_OK) {
    delete call;
    return false;
  }
  ++in_flight_;
  conn.sent.push_back(Clock::now());
  conn.last_load_seq = ++conn.seq;
  if (after_noscript) script_reloads_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void RedisLimiter::on_reply_cb(redisAsyncContext* ac, void* reply, void* privdata) {
  std::unique_ptr<Call> call(static_cast<Call*>(privdata));
  auto* conn = static_cast<Connection*>(ac->data);
  RedisLimiter* self = conn->owner;
  if (self->in_flight_ > 0) --self->in_flight_;
  if (!conn->sent.empty()) conn->sent.pop_front();  // replies come in send order
  if (call->pending) {
    self->on_eval_reply(*conn, call->pending, reply);
  } else {
    self->on_load_reply(*conn, reply);
  }
}

void RedisLimiter::on_eval_reply(Connection& conn, const std::shared_ptr<Pending>& p,
                                 void* reply_ptr) {
  if (p->finished) return;  // past its deadline (or stopped): done was already called
  auto* reply = static_cast<redisReply*>(reply_ptr);
  if (reply == nullptr) {  // connection lost or freed
    finish(*p, std::nullopt);
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    std::string_view message(reply->str ? reply->str : "", reply->str ? reply->len : 0);
    if (message.starts_with("NOSCRIPT") && !p->retried && !conn.closing &&
        conn.ac != nullptr && &conn == conn_.get()) {
      // The server lost its script cache (SCRIPT FLUSH, failover). Commands are processed in
      // order on one connection, so one SCRIPT LOAD sent after this EVALSHA serves every retry
      // sent after it: send a new one only if none was sent since this command.
      p->retried = true;
      bool loaded = conn.last_load_seq > p->sent_seq || send_script_load(conn, true);
      if (loaded && send_eval(conn, p)) return;
    }
    finish(*p, std::nullopt);
    return;
  }
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 4) {
    finish(*p, std::nullopt);
    return;
  }
  for (std::size_t i = 0; i < 4; ++i) {
    if (reply->element[i]->type != REDIS_REPLY_INTEGER) {
      finish(*p, std::nullopt);
      return;
    }
  }
  RedisLimitResult result;
  result.allowed = reply->element[0]->integer == 1;
  result.retry_after_seconds = static_cast<double>(reply->element[1]->integer) / 1e6;
  result.remaining = static_cast<double>(reply->element[2]->integer);
  result.reset_after_seconds = static_cast<double>(reply->element[3]->integer) / 1e6;
  finish(*p, result);
}

void RedisLimiter::on_load_reply(Connection& conn, void* reply_ptr) {
  auto* reply = static_cast<redisReply*>(reply_ptr);
  if (reply == nullptr) return;  // the connection is going away; its loss is handled there
  if (reply->type == REDIS_REPLY_STRING) {
    sha_.assign(reply->str, reply->len);
    if (&conn == conn_.get() && state_ == State::kLoading) on_ready(conn_);
    return;
  }
  std::string reason = "SCRIPT LOAD failed";
  if (reply->type == REDIS_REPLY_ERROR && reply->str) reason += ": " + std::string(reply->str, reply->len);
  if (&conn == conn_.get() && state_ == State::kLoading) {
    // Inside a hiredis callback: free the context from a fresh handler.
    net::post(ioc_, [weak = weak_from_this(), c = conn.shared_from_this(), reason] {
      if (auto self = weak.lock()) self->reset_connection(c, reason);
    });
  }
}

void RedisLimiter::arm_deadline() {
  if (deadline_armed_) return;
  while (!pending_.empty() && pending_.front()->finished) pending_.pop_front();
  if (pending_.empty()) return;
  deadline_armed_ = true;
  deadline_timer_.expires_at(pending_.front()->deadline);
  deadline_timer_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (!self) return;
    self->deadline_armed_ = false;
    if (ec) return;
    self->on_deadline();
  });
}

void RedisLimiter::on_deadline() {
  const auto now = Clock::now();
  while (!pending_.empty()) {
    Pending& p = *pending_.front();
    if (!p.finished) {
      if (p.deadline > now) break;
      finish(p, std::nullopt);  // a later reply is ignored (p.finished)
    }
    pending_.pop_front();
  }
  // A connection that leaves a command unanswered for longer than the connect timeout is hung
  // (stopped server, black-holed route): its TCP stays up, so hiredis would never notice.
  if (state_ == State::kReady && conn_ && !conn_->sent.empty() &&
      now - conn_->sent.front() > options_.connect_timeout) {
    reset_connection(conn_, "no reply for " +
                                std::to_string(options_.connect_timeout.count()) + " ms");
  }
  arm_deadline();
}

void RedisLimiter::finish(Pending& p, std::optional<RedisLimitResult> result) {
  if (p.finished) return;
  p.finished = true;
  if (!result) fallbacks_.fetch_add(1, std::memory_order_relaxed);
  net::post(ioc_, [done = std::move(p.done), result]() mutable { done(result); });
}

void RedisLimiter::answer_now(std::function<void(std::optional<RedisLimitResult>)> done) {
  fallbacks_.fetch_add(1, std::memory_order_relaxed);
  net::post(ioc_, [done = std::move(done)]() mutable { done(std::nullopt); });
}

void RedisLimiter::fail_all_pending() {
  for (auto& p : pending_) finish(*p, std::nullopt);
  pending_.clear();
}

}  // namespace crawlgate::proxy
