// Real parts for proxy tests: a Beast backend on 127.0.0.1 with routes that misbehave on demand,
// an in-process crawlgate, and a raw-socket client that can send any bytes.
#pragma once

#include <utility>  // before Asio: GCC 12 needs std::exchange for its coroutine headers
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "crawlgate/proxy/server.h"

namespace crawlgate::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

// Deterministic bytes for streamed bodies: byte i of a stream is pattern_byte(i). The period is
// prime, so a lost, repeated or shifted block shows. fill_pattern/matches_pattern work on whole
// ranges (up to kPatternMaxRange bytes) with memcpy/memcmp, fast enough for GiB streams.
constexpr std::size_t kPatternPeriod = 65521;
constexpr std::size_t kPatternMaxRange = 256 * 1024;
const char* pattern_table();  // kPatternPeriod + kPatternMaxRange bytes
inline char pattern_byte(std::uint64_t i) { return pattern_table()[i % kPatternPeriod]; }
void fill_pattern(char* out, std::uint64_t offset, std::size_t n);
bool matches_pattern(const char* data, std::uint64_t offset, std::size_t n);

// Routes:
//   /echo        200, body = "METHOD TARGET\n" + "Name: value\n"... + "\n" + request body
//   /sink        reads the body streaming; 200 "bytes=N ok=1" (ok=0 if a byte broke the pattern)
//   /stream?bytes=N[&chunked=1]   N pattern bytes, streamed
//   /hang        never answers (until the backend stops)
//   /slow?ms=M   answers 200 "slow" after M ms
//   /status?code=C   answers C (304/204 without body) with ETag
//   /early413    answers 413 without reading the body and closes
//   /silent-close?ms=M  answers with keep-alive, then closes the connection M ms later
//   /garbage     answers bytes that are not HTTP, then closes
//   /reset-mid-body  promises 100,000 bytes, sends 1,000, then resets the connection
//   /ws          WebSocket echo
//   anything else: 200 "ok <target>"
class TestBackend {
 public:
  TestBackend();
  ~TestBackend();
  uint16_t port() const { return port_; }
  int connections() const { return connections_.load(); }
  int requests() const { return requests_.load(); }
  // Bytes /endless-chunk-line managed to write before the proxy stopped reading them.
  std::uint64_t endless_bytes_sent() const { return endless_bytes_sent_.load(); }
  // The request heads parsed once every connection made so far has been served to its end: a
  // request that is still on its way cannot be missed. Call it after the proxy is gone (a pooled
  // upstream connection stays open until then); waits up to `limit`.
  int settled_requests(std::chrono::milliseconds limit = std::chrono::milliseconds(10000));
  void stop();

 private:
  void accept_loop();
  void serve(std::shared_ptr<tcp::socket> socket);

  net::io_context ioc_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> requests_{0};
  std::atomic<std::uint64_t> endless_bytes_sent_{0};
  std::atomic<int> serving_{0};    // connections whose serve() has not returned
  std::atomic<int> sentinels_{0};  // settled_requests' own requests, not counted
  std::mutex mutex_;
  std::vector<std::shared_ptr<tcp::socket>> sockets_;
  std::vector<std::thread> threads_;
  std::thread acceptor_thread_;
};

// crawlgate in-process on 127.0.0.1:0 in front of `upstream_port`.
struct ProxyOptions {
  std::vector<std::string> trusted_proxies;
  std::string access_log_path;  // "" = off
  ServerSettings settings;      // base settings; listen/admin/upstream are set by the fixture
};

class RunningProxy {
 public:
  RunningProxy(uint16_t upstream_port, ServerSettings settings);
  ~RunningProxy();
  uint16_t port() const { return server_->port(); }
  uint16_t admin_port() const { return server_->admin_port(); }
  proxy::Server& server() { return *server_; }
  void shutdown_and_wait();

 private:
  std::unique_ptr<proxy::Server> server_;
  bool stopped_ = false;
};

// Test settings: loopback, 2 threads, short timeouts so failures show quickly.
ServerSettings test_settings();

struct Response {
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  int version = 11;
  std::string header(std::string_view name) const;
  bool has_header(std::string_view name) const;
};

// A blocking client socket with a receive timeout, for sending arbitrary bytes.
class RawClient {
 public:
  explicit RawClient(uint16_t port);
  void send(std::string_view bytes);
  // Reads one response (body included). `head_request` for responses to HEAD.
  std::optional<Response> read_response(bool head_request = false);
  // True when the server closed the connection (EOF or reset) within the timeout.
  bool closed_by_peer();
  tcp::socket& socket() { return socket_; }
  beast::flat_buffer& buffer() { return buffer_; }

 private:
  net::io_context ioc_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

// One request on a fresh connection.
std::optional<Response> request(uint16_t port, std::string_view raw, bool head_request = false);

std::string get_request(std::string_view target, std::string_view extra_headers = "");

}  // namespace crawlgate::test
