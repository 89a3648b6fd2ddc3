#include "upstream_pool.h"

#include <sys/socket.h>

namespace crawlgate::proxy {
namespace {

// An idle upstream connection must have nothing to read: EOF means the server closed it, and
// unexpected bytes mean it is out of sync. Either way it must not carry another request.
bool still_usable(tcp::socket& socket) {
  char byte;
  ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

std::optional<UpstreamPool::Connection> UpstreamPool::acquire(const tcp::endpoint& endpoint) {
  auto now = std::chrono::steady_clock::now();
  while (!idle_.empty()) {
    Idle entry = std::move(idle_.back());
    idle_.pop_back();
    boost::system::error_code ignored;
    // The peek costs a system call per request; a connection idle for less than a second is
    // all but certain to be open, and the session retries an idempotent request once if not.
    bool recently_used = now - entry.since < std::chrono::seconds(1);
    if (entry.endpoint != endpoint || now - entry.since > idle_timeout_ ||
        (!recently_used && !still_usable(entry.socket))) {
      entry.socket.close(ignored);
      continue;
    }
    ++reused_;
    return Connection{std::move(entry.socket), std::move(entry.buffer)};
  }
  return std::nullopt;
}

void UpstreamPool::release(Connection connection, const tcp::endpoint& endpoint) {
  boost::system::error_code ignored;
  if (max_idle_ == 0) {
    connection.socket.close(ignored);
    return;
  }
  if (idle_.size() >= max_idle_) {
    idle_.front().socket.close(ignored);
    idle_.pop_front();
  }
  idle_.push_back(Idle{std::move(connection.socket), std::move(connection.buffer), endpoint,
                       std::chrono::steady_clock::now()});
  schedule_sweep();
}

void UpstreamPool::close_all() {
  boost::system::error_code ignored;
  for (Idle& entry : idle_) entry.socket.close(ignored);
  idle_.clear();
  sweep_timer_.cancel();
}

void UpstreamPool::schedule_sweep() {
  if (sweep_scheduled_) return;
  sweep_scheduled_ = true;
  sweep_timer_.expires_after(std::max(idle_timeout_ / 2, std::chrono::milliseconds(100)));
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    sweep_scheduled_ = false;
    if (ec) return;
    sweep();
  });
}

void UpstreamPool::sweep() {
  auto now = std::chrono::steady_clock::now();
  boost::system::error_code ignored;
  while (!idle_.empty() && now - idle_.front().since > idle_timeout_) {
    idle_.front().socket.close(ignored);
    idle_.pop_front();
  }
  if (!idle_.empty()) schedule_sweep();
}

}  // namespace crawlgate::proxy
