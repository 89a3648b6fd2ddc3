// Idle keep-alive connections to the upstream, per I/O thread. Each io_context is run by exactly
// one thread, so the pool needs no lock. Bounded in size; idle connections older than the idle
// timeout are closed by a sweep timer that only runs while the pool holds something.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <chrono>
#include <deque>
#include <optional>

namespace crawlgate::proxy {

namespace net = boost::asio;
using tcp = net::ip::tcp;

class UpstreamPool {
 public:
  explicit UpstreamPool(net::io_context& ioc) : sweep_timer_(ioc) {}

  void configure(std::size_t max_idle, std::chrono::milliseconds idle_timeout) {
    max_idle_ = max_idle;
    idle_timeout_ = idle_timeout;
  }

  // An idle connection with its read buffer: the buffer's capacity stays with the connection, so
  // a session holds no large buffer between requests and nothing is reallocated per request.
  struct Connection {
    tcp::socket socket;
    boost::beast::flat_buffer buffer;
  };
  // The most recently used idle connection to `endpoint` that the upstream has not closed.
  std::optional<Connection> acquire(const tcp::endpoint& endpoint);
  void release(Connection connection, const tcp::endpoint& endpoint);
  void close_all();
  std::size_t idle_count() const { return idle_.size(); }
  std::uint64_t reused() const { return reused_; }

 private:
  struct Idle {
    tcp::socket socket;
    boost::beast::flat_buffer buffer;
    tcp::endpoint endpoint;
    std::chrono::steady_clock::time_point since;
  };
  void schedule_sweep();
  void sweep();

  std::deque<Idle> idle_;  // oldest at the front
  std::size_t max_idle_ = 64;
  std::chrono::milliseconds idle_timeout_{30'000};
  net::steady_timer sweep_timer_;
  bool sweep_scheduled_ = false;
  std::uint64_t reused_ = 0;
};

}  // namespace crawlgate::proxy
