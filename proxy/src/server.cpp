#include "crawlgate/proxy/server.h"

#include <boost/asio/post.hpp>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "crawlgate/proxy/forwarding.h"

#include "server_impl.h"

namespace crawlgate::proxy {

ControlThread::ControlThread() {
  thread_ = std::thread([this] {
    std::unique_lock lock(mutex_);
    while (true) {
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  });
}

ControlThread::~ControlThread() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ControlThread::submit(std::function<void()> job) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

std::size_t AddressCounter::Hash::operator()(const IpAddress& address) const {
  std::uint64_t a, b;
  std::memcpy(&a, address.bytes().data(), 8);
  std::memcpy(&b, address.bytes().data() + 8, 8);
  return std::hash<std::uint64_t>{}(a * 0x9e3779b97f4a7c15ull ^ b);
}

bool AddressCounter::try_add(const IpAddress& address, std::size_t max) {
  Shard& s = shard(address);
  std::lock_guard lock(s.mutex);
  std::uint32_t& count = s.counts[address];
  if (count >= max) {
    if (count == 0) s.counts.erase(address);
    return false;
  }
  ++count;
  return true;
}

void AddressCounter::remove(const IpAddress& address) {
  Shard& s = shard(address);
  std::lock_guard lock(s.mutex);
  auto it = s.counts.find(address);
  if (it == s.counts.end()) return;
  if (--it->second == 0) s.counts.erase(it);
}

namespace {

// Answers and closes a connection we will not serve. The socket buffer of a fresh connection
// holds this easily: a non-blocking send never waits, and a client that cannot take it loses
// nothing it was owed.
void refuse_connection(tcp::socket& socket, std::string_view response) {
  boost::system::error_code ignored;
  socket.non_blocking(true, ignored);
  socket.write_some(net::buffer(response.data(), response.size()), ignored);
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

IpAddress peer_address(const tcp::socket& socket) {
  boost::system::error_code ec;
  auto endpoint = socket.remote_endpoint(ec);
  return ec ? IpAddress{} : to_ip_address(endpoint.address());
}

}  // namespace

IpAddress to_ip_address(const net::ip::address& address) {
  if (address.is_v4()) return IpAddress::v4(address.to_v4().to_uint());
  net::ip::address_v6 v6 = address.to_v6();
  if (v6.is_v4_mapped()) {
    return IpAddress::v4(net::ip::make_address_v4(net::ip::v4_mapped, v6).to_uint());
  }
  auto raw = v6.to_bytes();
  std::array<uint8_t, 16> bytes;
  std::copy(raw.begin(), raw.end(), bytes.begin());
  return IpAddress::v6(bytes);
}

Server::Impl::Impl(std::shared_ptr<const Snapshot> initial_snapshot)
    : initial(initial_snapshot),
      current(initial_snapshot),
      access_log(initial_snapshot->settings.access_log),
      control(std::make_unique<ControlThread>()) {}

Worker& Server::Impl::pick_worker() {
  return *workers[next_worker.fetch_add(1, std::memory_order_relaxed) % workers.size()];
}

void Server::Impl::do_accept() {
  Worker& worker = pick_worker();
  acceptor->async_accept(worker.ioc, [this, &worker](boost::system::error_code ec,
                                                     tcp::socket socket) {
    if (ec) {
      if (ec == net::error::operation_aborted || !acceptor->is_open()) return;
      // EMFILE and friends: keep accepting; the condition is usually transient.
      return do_accept();
    }
    stats.connections_accepted.fetch_add(1, std::memory_order_relaxed);
    auto snapshot = load_snapshot();
    const LimitSettings& limits = snapshot->settings.limits;
    if (static_cast<std::size_t>(stats.connections_open.load(std::memory_order_relaxed)) >=
        limits.max_connections) {
      stats.connections_rejected.fetch_add(1, std::memory_order_relaxed);
      refuse_connection(socket,
                        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                        "Content-Length: 38\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"
                        "crawlgate: too many open connections\r\n");
      return do_accept();
    }
    std::optional<IpAddress> counted;
    if (limits.max_connections_per_address > 0) {
      IpAddress peer = peer_address(socket);
      // A trusted proxy carries many clients on its connections: it is not one address.
      if (!is_trusted(peer, snapshot->settings.trusted_proxies)) {
        if (!connections_by_address.try_add(peer, limits.max_connections_per_address)) {
          stats.connections_rejected_per_address.fetch_add(1, std::memory_order_relaxed);
          refuse_connection(socket,
                            "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n"
                            "Content-Length: 50\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"
                            "crawlgate: too many connections from this address\r\n");
          return do_accept();
        }
        counted = peer;
      }
    }
    net::post(worker.ioc, [this, &worker, socket = std::move(socket), counted]() mutable {
      if (draining.load()) {
        if (counted) connections_by_address.remove(*counted);
        return;
      }
      start_session(*this, worker, std::move(socket), counted);
    });
    do_accept();
  });
}

void Server::Impl::on_session_closed() {
  if (draining.load(std::memory_order_acquire) &&
      stats.connections_open.load(std::memory_order_acquire) == 0) {
    stop_all();
  }
}

void Server::Impl::stop_all() {
  if (stopped.exchange(true)) return;
  for (auto& worker : workers) {
    net::post(worker->ioc, [w = worker.get()] {
      w->pool.close_all();
      if (w->redis) w->redis->redis().stop();
      w->guard.reset();
      w->ioc.stop();
    });
  }
  grace_cv.notify_all();
}

void Server::Impl::begin_shutdown() {
  if (draining.exchange(true)) return;
  net::post(workers[0]->ioc, [this] {
    boost::system::error_code ignored;
    if (acceptor) acceptor->close(ignored);
    if (admin_acceptor) admin_acceptor->close(ignored);
    if (signals) signals->cancel(ignored);
  });
  for (auto& worker : workers) {
    net::post(worker->ioc, [w = worker.get()] {
      // Copy: draining may close a session, which erases itself from the set.
      std::vector<Session*> sessions(w->sessions.begin(), w->sessions.end());
      for (Session* session : sessions) {
        if (w->sessions.count(session)) drain_session(session);
      }
      w->pool.close_all();
    });
  }
  auto grace = load_snapshot()->settings.timeouts.shutdown_grace;
  grace_thread = std::thread([this, grace] {
    std::unique_lock lock(grace_mutex);
    grace_cv.wait_for(lock, grace, [&] { return stopped.load(); });
    lock.unlock();
    stop_all();
  });
  // With no open connection there is nothing to wait for.
  net::post(workers[0]->ioc, [this] { on_session_closed(); });
}

void Server::Impl::request_reload(std::function<void(bool ok, std::string message)> done) {
  control->submit([this, done = std::move(done)] {
    std::function<std::string(bool&)> handler;
    {
      std::lock_guard lock(handler_mutex);
      handler = reload_handler;
    }
    if (!handler) return done(false, "reload is not configured");
    bool ok = false;
    std::string message = handler(ok);
    done(ok, std::move(message));
  });
}

Server::Server(std::shared_ptr<const Snapshot> initial)
    : impl_(std::make_unique<Impl>(std::move(initial))) {}

Server::~Server() {
  if (!impl_->workers.empty() && !impl_->stopped.load()) {
    impl_->begin_shutdown();
    impl_->stop_all();
  }
  wait();
  if (impl_->grace_thread.joinable()) impl_->grace_thread.join();
  // I/O objects before the io_contexts they belong to; sessions still queued are destroyed
  // with their worker while the rest of Impl is alive.
  impl_->signals.reset();
  impl_->acceptor.reset();
  impl_->admin_acceptor.reset();
  impl_->workers.clear();
}

namespace {

tcp::endpoint resolve_listen(const HostPort& address) {
  boost::system::error_code ec;
  auto ip = net::ip::make_address(address.host == "localhost" ? "127.0.0.1" : address.host, ec);
  if (ec) {
    throw std::runtime_error("cannot listen on " + address.to_string() +
                             ": the host must be an IP address");
  }
  return tcp::endpoint(ip, address.port);
}

void open_listener(std::optional<tcp::acceptor>& acceptor, net::io_context& ioc,
                   const HostPort& address, const char* what) {
  tcp::endpoint endpoint = resolve_listen(address);
  boost::system::error_code ec;
  acceptor.emplace(ioc);
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::runtime_error(std::string("cannot open the ") + what + " listener on " +
                             address.to_string() + ": " + ec.message());
  }
}

}  // namespace

void Server::start() {
  const ServerSettings& settings = impl_->initial->settings;
  unsigned threads = settings.threads ? settings.threads : std::thread::hardware_concurrency();
  if (threads == 0) threads = 1;
  for (unsigned i = 0; i < threads; ++i) {
    auto worker = std::make_unique<Worker>();
    worker->pool.configure(settings.upstream.pool_max_idle, settings.upstream.pool_idle_timeout);
    if (settings.redis.enabled) {
      // One connection per I/O thread: hiredis contexts are single-threaded, and so no request
      // ever waits for another thread to reach Redis.
      RedisOptions options;
      options.host = settings.redis.address.host;
      options.port = settings.redis.address.port;
      options.budget = settings.redis.budget;
      options.connect_timeout = settings.redis.connect_timeout;
      options.key_prefix = settings.redis.key_prefix;
      worker->redis = std::make_unique<RedisSharedLimiter>(
          std::make_shared<RedisLimiter>(worker->ioc, options));
    }
    worker->guard.emplace(worker->ioc.get_executor());
    impl_->workers.push_back(std::move(worker));
  }
  open_listener(impl_->acceptor, impl_->workers[0]->ioc, settings.listen, "public");
  if (settings.admin.port != 0 || settings.admin.host != "") {
    open_listener(impl_->admin_acceptor, impl_->workers[0]->ioc, settings.admin, "admin");
  }
  impl_->port = impl_->acceptor->local_endpoint().port();
  if (impl_->admin_acceptor) impl_->admin_port = impl_->admin_acceptor->local_endpoint().port();
  impl_->do_accept();
  if (impl_->admin_acceptor) impl_->do_accept_admin();
  for (auto& worker : impl_->workers) {
    if (worker->redis) worker->redis->redis().start();
    worker->thread = std::thread([w = worker.get()] {
      SharedLimiter::set_current(w->redis.get());
      // A handler that throws must not take the process down with it.
      while (true) {
        try {
          w->ioc.run();
          return;
        } catch (const std::exception& e) {
          std::fprintf(stderr, "crawlgate: unexpected error on an I/O thread: %s\n", e.what());
        }
      }
    });
  }
}

void Server::handle_signals() {
  auto& signals = impl_->signals.emplace(impl_->workers[0]->ioc, SIGINT, SIGTERM, SIGHUP);
  signals.add(SIGUSR1);
  std::signal(SIGPIPE, SIG_IGN);
  impl_->wait_for_signal();
}

void Server::Impl::wait_for_signal() {
  signals->async_wait([this](boost::system::error_code ec, int signal_number) {
    if (ec) return;
    if (signal_number == SIGINT || signal_number == SIGTERM) {
      std::fprintf(stderr, "crawlgate: shutting down (signal %d)\n", signal_number);
      begin_shutdown();
      return;
    }
    if (signal_number == SIGHUP) {
      request_reload([](bool ok, std::string message) {
        std::fprintf(stderr, "crawlgate: reload %s: %s\n", ok ? "succeeded" : "failed",
                     message.c_str());
      });
    } else if (signal_number == SIGUSR1) {
      access_log.reopen();
    }
    wait_for_signal();
  });
}

void Server::wait() {
  for (auto& worker : impl_->workers) {
    if (worker->thread.joinable()) worker->thread.join();
  }
  if (impl_->grace_thread.joinable()) {
    impl_->grace_cv.notify_all();
    impl_->grace_thread.join();
  }
  impl_->access_log.flush();
}

void Server::shutdown() { impl_->begin_shutdown(); }

uint16_t Server::port() const { return impl_->port; }

uint16_t Server::admin_port() const { return impl_->admin_port; }

void Server::publish(std::shared_ptr<const Snapshot> snapshot) {
  impl_->current.store(std::move(snapshot), std::memory_order_release);
}

std::shared_ptr<const Snapshot> Server::snapshot() const { return impl_->load_snapshot(); }

std::uint64_t Server::next_generation() const { return impl_->load_snapshot()->generation + 1; }

void Server::set_reload_handler(std::function<std::string(bool& ok)> handler) {
  std::lock_guard lock(impl_->handler_mutex);
  impl_->reload_handler = std::move(handler);
}

void Server::set_metrics(std::shared_ptr<metrics::Metrics> metrics) {
  impl_->metrics = metrics;
  if (!metrics) return;
  using prometheus::MetricType;
  auto read = [](const auto& atomic) {
    return [&atomic] { return static_cast<double>(atomic.load(std::memory_order_relaxed)); };
  };
  ServerStats& stats = impl_->stats;
  std::vector<metrics::PulledValue> redis_up, redis_fallbacks;
  auto* workers = &impl_->workers;
  metrics->add_pulled("crawlgate_redis_up",
                      "1 when every I/O thread's shared-limit Redis connection is up",
                      MetricType::Gauge, {{{}, [workers] {
                        if (workers->empty() || !(*workers)[0]->redis) return 0.0;
                        for (auto& w : *workers) {
                          if (!w->redis || !w->redis->redis().connected()) return 0.0;
                        }
                        return 1.0;
                      }}});
  metrics->add_pulled("crawlgate_redis_fallbacks_total",
                      "Limit decisions taken locally because Redis was down, slow or erroring",
                      MetricType::Counter, {{{}, [workers] {
                        double total = 0;
                        for (auto& w : *workers) {
                          if (w->redis) total += double(w->redis->redis().fallbacks());
                        }
                        return total;
                      }}});
  metrics->add_pulled("crawlgate_connections_open", "Client connections open now",
                      MetricType::Gauge, {{{}, read(stats.connections_open)}});
  metrics->add_pulled("crawlgate_connections_total", "Client connections accepted",
                      MetricType::Counter, {{{}, read(stats.connections_accepted)}});
  metrics->add_pulled("crawlgate_connections_rejected_total",
                      "Connections refused: 503 over limits.max_connections (reason=total), "
                      "429 over limits.max_connections_per_address (reason=per_address)",
                      MetricType::Counter,
                      {{{{"reason", "total"}}, read(stats.connections_rejected)},
                       {{{"reason", "per_address"}}, read(stats.connections_rejected_per_address)}});
  metrics->add_pulled("crawlgate_upstream_errors_total", "Upstream failures by kind",
                      MetricType::Counter,
                      {{{{"kind", "connect"}}, read(stats.upstream_connect_errors)},
                       {{{"kind", "timeout"}}, read(stats.upstream_timeouts)},
                       {{{"kind", "invalid"}}, read(stats.upstream_errors)},
                       {{{"kind", "reset"}}, read(stats.upstream_resets)}});
  AccessLog& log = impl_->access_log;
  metrics->add_pulled("crawlgate_access_log_lines_total", "Access log lines by result",
                      MetricType::Counter,
                      {{{{"result", "written"}}, [&log] { return double(log.lines_written()); }},
                       {{{"result", "dropped"}}, [&log] { return double(log.lines_dropped()); }}});
}

metrics::Metrics* Server::metrics() const { return impl_->metrics.get(); }

void Server::set_throttle_state(std::shared_ptr<ThrottleState> state) {
  impl_->throttle = std::move(state);
}

AccessLog& Server::access_log() { return impl_->access_log; }

const ServerStats& Server::stats() const { return impl_->stats; }

}  // namespace crawlgate::proxy
