#include "test_support.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/beast/websocket.hpp>
#include <charconv>

namespace crawlgate::test {
namespace {

namespace websocket = beast::websocket;

std::uint64_t query_number(std::string_view target, std::string_view key, std::uint64_t fallback) {
  std::string needle = std::string(key) + "=";
  std::size_t pos = target.find(needle);
  if (pos == std::string_view::npos) return fallback;
  std::uint64_t value = 0;
  auto begin = target.data() + pos + needle.size();
  std::from_chars(begin, target.data() + target.size(), value);
  return value;
}

void set_receive_timeout(tcp::socket& socket, int seconds) {
  timeval tv{seconds, 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void write_stream(tcp::socket& socket, const http::request<http::buffer_body>& req, std::uint64_t bytes,
                  bool chunked, beast::error_code& ec) {
  http::response<http::buffer_body> res{http::status::ok, req.version()};
  res.set(http::field::content_type, "application/octet-stream");
  if (chunked) {
    res.chunked(true);
  } else {
    res.content_length(bytes);
  }
  res.keep_alive(req.keep_alive());
  res.body().data = nullptr;
  res.body().more = true;
  http::response_serializer<http::buffer_body> sr{res};
  http::write_header(socket, sr, ec);
  if (ec) return;
  std::vector<char> chunk(64 * 1024);
  std::uint64_t sent = 0;
  while (sent < bytes) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), bytes - sent));
    fill_pattern(chunk.data(), sent, n);
    res.body().data = chunk.data();
    res.body().size = n;
    res.body().more = true;
    http::write(socket, sr, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return;
    sent += n;
  }
  res.body().data = nullptr;
  res.body().size = 0;
  res.body().more = false;
  http::write(socket, sr, ec);
  if (ec == http::error::need_buffer) ec = {};
}

}  // namespace

const char* pattern_table() {
  static const std::vector<char> table = [] {
    std::vector<char> bytes(kPatternPeriod + kPatternMaxRange);
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      std::size_t k = i % kPatternPeriod;
      bytes[i] = static_cast<char>('a' + (k * 7 + k / 251) % 26);
    }
    return bytes;
  }();
  return table.data();
}

void fill_pattern(char* out, std::uint64_t offset, std::size_t n) {
  while (n > 0) {
    std::size_t take = std::min(n, kPatternMaxRange);
    std::memcpy(out, pattern_table() + offset % kPatternPeriod, take);
    out += take;
    offset += take;
    n -= take;
  }
}

bool matches_pattern(const char* data, std::uint64_t offset, std::size_t n) {
  while (n > 0) {
    std::size_t take = std::min(n, kPatternMaxRange);
    if (std::memcmp(data, pattern_table() + offset % kPatternPeriod, take) != 0) return false;
    data += take;
    offset += take;
    n -= take;
  }
  return true;
}

TestBackend::TestBackend() : acceptor_(ioc_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)) {
  port_ = acceptor_.local_endpoint().port();
  acceptor_thread_ = std::thread([this] { accept_loop(); });
}

TestBackend::~TestBackend() { stop(); }

void TestBackend::stop() {
  if (stopping_.exchange(true)) return;
  beast::error_code ignored;
  // Wake the blocking accept with a connection of our own.
  {
    tcp::socket poke(ioc_);
    poke.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port_), ignored);
  }
  if (acceptor_thread_.joinable()) acceptor_thread_.join();
  acceptor_.close(ignored);
  {
    std::lock_guard lock(mutex_);
    for (auto& socket : sockets_) socket->shutdown(tcp::socket::shutdown_both, ignored);
  }
  for (auto& thread : threads_) thread.join();
}

void TestBackend::accept_loop() {
  while (!stopping_) {
    auto socket = std::make_shared<tcp::socket>(ioc_);
    beast::error_code ec;
    acceptor_.accept(*socket, ec);
    if (ec || stopping_) return;
    connections_++;
    serving_++;  // before the thread starts, so that settled_requests never sees a gap
    std::lock_guard lock(mutex_);
    sockets_.push_back(socket);
    threads_.emplace_back([this, socket] {
      serve(socket);
      serving_--;
    });
  }
}

void TestBackend::serve(std::shared_ptr<tcp::socket> socket) {
  beast::flat_buffer buffer;
  beast::error_code ec;
  while (!stopping_) {
    http::request_parser<http::buffer_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    http::read_header(*socket, buffer, parser, ec);
    if (ec) return;
    requests_++;
    auto& req = parser.get();
    std::string target(req.target());
    auto respond = [&](http::status status, std::string body, bool close = false) {
      http::response<http::string_body> res{status, req.version()};
      res.set(http::field::content_type, "text/plain");
      res.body() = std::move(body);
      res.prepare_payload();
      res.keep_alive(req.keep_alive() && !close);
      http::write(*socket, res, ec);
      return !ec && res.keep_alive();
    };
    // Read the whole body into a string (or verify it streaming for /sink).
    std::string body;
    std::uint64_t body_bytes = 0;
    bool body_ok = true;
    bool sink = target.starts_with("/sink");
    if (target.starts_with("/early413")) {
      respond(http::status::payload_too_large, "too large", true);
      {
        std::lock_guard lock(mutex_);
        socket->shutdown(tcp::socket::shutdown_both, ec);
      }
      return;
    }
    if (target.starts_with("/ws") && websocket::is_upgrade(req)) {
      // Beast's WebSocket teardown closes its socket; stop() must never shut down that same
      // object concurrently, so the session gets a socket of its own (moved under the lock).
      tcp::socket own(ioc_);
      {
        std::lock_guard lock(mutex_);
        own = std::move(*socket);
      }
      websocket::stream<tcp::socket&> ws(own);
      // The parser's header plus whatever it buffered: hand both to the websocket.
      http::request<http::empty_body> upgrade{req.base()};
      ws.accept(upgrade, ec);
      if (ec) return;
      beast::flat_buffer frame;
      while (!stopping_) {
        ws.read(frame, ec);
        if (ec) return;
        ws.text(ws.got_text());
        ws.write(frame.data(), ec);
        if (ec) return;
        frame.consume(frame.size());
      }
      return;
    }
    char chunk[16 * 1024];
    while (!parser.is_done()) {
      req.body().data = chunk;
      req.body().size = sizeof chunk;
      http::read(*socket, buffer, parser, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) return;
      std::size_t n = sizeof chunk - req.body().size;
      if (sink) {
        if (!matches_pattern(chunk, body_bytes, n)) body_ok = false;
      } else {
        body.append(chunk, n);
      }
      body_bytes += n;
    }
    bool keep = true;
    if (target.starts_with("/echo")) {
      std::string text = std::string(req.method_string()) + " " + target + "\n";
      for (const auto& field : req) {
        text += std::string(field.name_string()) + ": " + std::string(field.value()) + "\n";
      }
      text += "\n" + body;
      keep = respond(http::status::ok, std::move(text));
    } else if (sink) {
      keep = respond(http::status::ok, "bytes=" + std::to_string(body_bytes) +
                                           " ok=" + (body_ok ? "1" : "0"));
    } else if (target.starts_with("/stream")) {
      write_stream(*socket, req, query_number(target, "bytes", 0),
                   query_number(target, "chunked", 0) == 1, ec);
      keep = !ec && req.keep_alive();
    } else if (target.starts_with("/hang")) {
      for (int i = 0; i < 200 && !stopping_; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      return;
    } else if (target.starts_with("/slow")) {
      std::this_thread::sleep_for(std::chrono::milliseconds(query_number(target, "ms", 100)));
      keep = respond(http::status::ok, "slow");
    } else if (target.starts_with("/status")) {
      auto code = static_cast<unsigned>(query_number(target, "code", 200));
      http::response<http::empty_body> res{static_cast<http::status>(code), req.version()};
      res.set(http::field::etag, "\"v1\"");
      res.keep_alive(req.keep_alive());
      http::write(*socket, res, ec);
      keep = !ec && req.keep_alive();
    } else if (target.starts_with("/garbage")) {
      net::write(*socket, net::buffer(std::string_view("SMTP ready, not HTTP\r\n\r\n")), ec);
      {
        std::lock_guard lock(mutex_);
        socket->shutdown(tcp::socket::shutdown_both, ec);
      }
      return;
    } else if (target.starts_with("/endless-chunk-line")) {
      // A chunked response whose first chunk-size line never ends: up to 256 MiB of "extension",
      // until the proxy stops reading (counted; bounded in bytes and by the socket's errors).
      std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=";
      net::write(*socket, net::buffer(head), ec);
      const std::string slab(64 * 1024, 'e');
      for (int i = 0; i < 4096 && !ec; ++i) {
        std::size_t n = net::write(*socket, net::buffer(slab), ec);
        endless_bytes_sent_.fetch_add(n);
      }
      {
        std::lock_guard lock(mutex_);
        socket->shutdown(tcp::socket::shutdown_both, ec);
      }
      return;
    } else if (target.starts_with("/reset-mid-body")) {
      // Promise 100,000 bytes, send 1,000, then reset the connection (RST, not FIN).
      std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
      net::write(*socket, net::buffer(head), ec);
      net::write(*socket, net::buffer(std::string(1000, 'r')), ec);
      {
        // stop() may shut sockets down from another thread: touch them under its lock.
        std::lock_guard lock(mutex_);
        socket->set_option(net::socket_base::linger(true, 0), ec);
        socket->close(ec);
      }
      return;
    } else if (target.starts_with("/silent-close")) {
      // Answers as if the connection stays open, then drops it: a pooled connection gone stale.
      respond(http::status::ok, "silent");
      std::this_thread::sleep_for(std::chrono::milliseconds(query_number(target, "ms", 50)));
      {
        std::lock_guard lock(mutex_);
        socket->shutdown(tcp::socket::shutdown_both, ec);
      }
      return;
    } else if (target.starts_with("/close")) {
      respond(http::status::ok, "bye", true);
      keep = false;
    } else {
      keep = respond(http::status::ok, "ok " + target);
    }
    if (!keep) {
      {
        std::lock_guard lock(mutex_);
        socket->shutdown(tcp::socket::shutdown_send, ec);
      }
      return;
    }
  }
}

int TestBackend::settled_requests(std::chrono::milliseconds limit) {
  // Connections are accepted in the order they were made: once a connection of our own has been
  // answered, every earlier one has been accepted and counted in serving_.
  {
    tcp::socket sentinel(ioc_);
    sentinel.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    set_receive_timeout(sentinel, 10);
    sentinels_++;
    net::write(sentinel, net::buffer(std::string_view(
                             "GET /-sentinel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")));
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    beast::error_code ec;
    http::read(sentinel, buffer, res, ec);
  }
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (serving_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return requests_.load() - sentinels_.load();
}

ServerSettings test_settings() {
  ServerSettings settings;
  settings.listen = HostPort{"127.0.0.1", 0};
  settings.admin = HostPort{"127.0.0.1", 0};
  settings.threads = 2;
  settings.upstream.connect_timeout = std::chrono::milliseconds(2000);
  settings.upstream.response_timeout = std::chrono::milliseconds(3000);
  settings.timeouts.header_read = std::chrono::milliseconds(3000);
  settings.timeouts.shutdown_grace = std::chrono::milliseconds(5000);
  return settings;
}

RunningProxy::RunningProxy(uint16_t upstream_port, ServerSettings settings) {
  settings.upstream.address = HostPort{"127.0.0.1", upstream_port};
  server_ = std::make_unique<proxy::Server>(proxy::build_snapshot(settings, 1, "test"));
  server_->start();
}

RunningProxy::~RunningProxy() { shutdown_and_wait(); }

void RunningProxy::shutdown_and_wait() {
  if (stopped_) return;
  stopped_ = true;
  server_->shutdown();
  server_->wait();
}

std::string Response::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return value;
  }
  return {};
}

bool Response::has_header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return true;
  }
  return false;
}

RawClient::RawClient(uint16_t port) : socket_(ioc_) {
  socket_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  set_receive_timeout(socket_, 10);
}

void RawClient::send(std::string_view bytes) { net::write(socket_, net::buffer(bytes)); }

std::optional<Response> RawClient::read_response(bool head_request) {
  http::response_parser<http::string_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  parser.skip(head_request);
  beast::error_code ec;
  http::read(socket_, buffer_, parser, ec);
  if (ec) return std::nullopt;
  Response response;
  auto& res = parser.get();
  response.status = res.result_int();
  response.reason = std::string(res.reason());
  response.version = res.version();
  for (const auto& field : res) {
    response.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  response.body = std::move(res.body());
  return response;
}

bool RawClient::closed_by_peer() {
  if (buffer_.size() > 0) return false;
  char byte;
  beast::error_code ec;
  std::size_t n = socket_.read_some(net::buffer(&byte, 1), ec);
  return n == 0 && (ec == net::error::eof || ec == net::error::connection_reset);
}

std::optional<Response> request(uint16_t port, std::string_view raw, bool head_request) {
  RawClient client(port);
  client.send(raw);
  return client.read_response(head_request);
}

std::string get_request(std::string_view target, std::string_view extra_headers) {
  std::string text = "GET ";
  text.append(target).append(" HTTP/1.1\r\nHost: test.local\r\n");
  if (extra_headers.find("User-Agent:") == std::string_view::npos) {
    text.append("User-Agent: crawlgate-test\r\n");
  }
  text.append(extra_headers).append("\r\n");
  return text;
}

}  // namespace crawlgate::test
