// One client connection: read a request head, validate it strictly, run the pipeline, then either
// answer locally or relay the request and its response, streaming both bodies. Callback style of
// Beast's http_server_async example: shared_from_this keeps the session alive across operations,
// and every operation carries a timeout.
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <limits>
#include <memory>
#include <mutex>

#include "crawlgate/classifier/features.h"
#include "crawlgate/proxy/forwarding.h"
#include "crawlgate/proxy/request_head.h"
#include "server_impl.h"

namespace crawlgate::proxy {

namespace beast = boost::beast;
namespace http = beast::http;
using error_code = boost::system::error_code;

namespace {

constexpr std::size_t kReadChunk = 4096;
constexpr std::size_t kRelayBufferSize = 64 * 1024;
// Beast 1.74 compares `len > body_limit` with an optional, and boost::none compares lower than
// every length: body_limit(boost::none) rejects every Content-Length body. Use the largest value.
constexpr std::uint64_t kNoBodyLimit = std::numeric_limits<std::uint64_t>::max();

// RFC 9110 §7.6.1: connection-specific fields a proxy must not forward.
bool is_hop_by_hop(std::string_view name) {
  return iequals(name, "connection") || iequals(name, "keep-alive") ||
         iequals(name, "proxy-connection") || iequals(name, "te") || iequals(name, "trailer") ||
         iequals(name, "transfer-encoding") || iequals(name, "upgrade") ||
         iequals(name, "proxy-authenticate") || iequals(name, "proxy-authorization");
}

bool is_idempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE" ||
         method == "PUT" || method == "DELETE";
}

bool named_in(std::string_view name, const std::vector<std::string_view>& tokens) {
  for (std::string_view token : tokens) {
    if (iequals(token, name)) return true;
  }
  return false;
}

// Connection options of a response: the tokens of its Connection fields.
std::vector<std::string_view> connection_tokens(const http::fields& fields) {
  std::vector<std::string_view> tokens;
  for (auto it = fields.find(http::field::connection); it != fields.end() &&
                                                        it->name() == http::field::connection;
       ++it) {
    std::string_view list = it->value();
    while (!list.empty()) {
      std::size_t comma = list.find(',');
      std::string_view token = list.substr(0, comma);
      while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
      while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
      if (!token.empty()) tokens.push_back(token);
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  return tokens;
}

// A 64 KiB body buffer for the length of one request. Buffers come from a small per-thread free
// list: no allocation and no zero-filling per request, and idle connections hold none.
class RelayBuffer {
 public:
  RelayBuffer() = default;
  RelayBuffer(RelayBuffer&& other) noexcept : data_(std::exchange(other.data_, nullptr)) {}
  RelayBuffer& operator=(RelayBuffer&& other) noexcept {
    if (this != &other) {
      reset();
      data_ = std::exchange(other.data_, nullptr);
    }
    return *this;
  }
  ~RelayBuffer() { reset(); }

  static RelayBuffer acquire() {
    RelayBuffer buffer;
    auto& pool = free_list();
    if (pool.empty()) {
      buffer.data_ = new char[kRelayBufferSize];  // uninitialised: it is always written first
    } else {
      buffer.data_ = pool.back();
      pool.pop_back();
    }
    return buffer;
  }
  char* get() const { return data_; }
  explicit operator bool() const { return data_ != nullptr; }
  void reset() {
    if (!data_) return;
    auto& pool = free_list();
    if (pool.size() < kPoolMax) {
      pool.push_back(data_);
    } else {
      delete[] data_;
    }
    data_ = nullptr;
  }

 private:
  static constexpr std::size_t kPoolMax = 64;
  struct FreeList : std::vector<char*> {
    ~FreeList() {
      for (char* buffer : *this) delete[] buffer;
    }
  };
  static FreeList& free_list() {
    thread_local FreeList pool;
    return pool;
  }
  char* data_ = nullptr;
};

}  // namespace

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Server::Impl& server, Worker& worker, tcp::socket socket,
          std::optional<IpAddress> counted)
      : server_(server), worker_(worker), client_(std::move(socket)), counted_(counted) {
    error_code ec;
    auto endpoint = client_.socket().remote_endpoint(ec);
    if (!ec) peer_ = to_ip_address(endpoint.address());
    client_.socket().set_option(tcp::no_delay(true), ec);
    worker_.sessions.insert(this);
    server_.stats.connections_open.fetch_add(1, std::memory_order_relaxed);
  }

  ~Session() {
    if (resume_token_) {
      std::lock_guard lock(resume_token_->mutex);
      resume_token_->alive = false;
    }
    if (counted_) server_.connections_by_address.remove(*counted_);
    worker_.sessions.erase(this);
    server_.stats.connections_open.fetch_sub(1, std::memory_order_relaxed);
    server_.on_session_closed();
  }

  void start() { do_read_head(); }

  // Runs on this session's strand.
  void drain() {
    draining_ = true;
    // A tarpitted client is not owed a graceful answer: do not let it hold shutdown up.
    if (hold_) return close();
    if (suspended_self_) {
      auto keep = std::move(suspended_self_);
      return close();
    }
    if (idle_) {
      error_code ignored;
      client_.socket().close(ignored);
    }
  }

 private:
  // ---- reading the request head -------------------------------------------------------------

  // Everything a client sends passes through buffer_: a head up to max_header_bytes, a chunk
  // line, body bytes on their way to the relay buffer. Its cap makes an endless chunk extension
  // or chunk-size line an error (http::error::buffer_overflow -> 400) instead of memory; 64 KiB
  // keeps body reads as large as Beast makes them.
  void bound_buffer() {
    std::size_t cap = std::max<std::size_t>(settings().limits.max_header_bytes, 64 * 1024);
    buffer_.max_size(std::max(cap, buffer_.size()) + 2 * kReadChunk);
  }

  void do_read_head() {
    reset_request();
    bound_buffer();
    if (try_parse_buffered_head()) return;
    if (buffer_.size() == 0) {
      if (draining_) return close();
      // Waiting for the first byte of a request: the idle keep-alive timeout applies (the
      // header timeout on a fresh connection). Expiry closes the connection silently.
      idle_ = true;
      const TimeoutSettings& timeouts = settings().timeouts;
      client_.expires_after(first_request_ ? timeouts.header_read : timeouts.idle_keepalive);
    } else {
      start_read_timer(settings().timeouts.header_read);
    }
    client_.async_read_some(buffer_.prepare(kReadChunk),
                            beast::bind_front_handler(&Session::on_read_head, shared_from_this()));
  }

  // A client read that must finish in time and still be answered with 408: once a head has
  // started it must complete within header_read, and each body read within body_read.
  // tcp_stream's own expiry would close the socket, leaving no way to answer; this timer cancels
  // the read instead and sets read_timed_out_. Each arming gets a generation, so an expiry
  // already queued when the timer was stopped cannot cancel a later read.
  void start_read_timer(Millis limit) {
    if (read_timer_armed_) return;
    read_timer_armed_ = true;
    client_.expires_never();
    std::uint64_t generation = ++read_timer_generation_;
    read_timer_.expires_after(limit);
    read_timer_.async_wait([self = shared_from_this(), generation](error_code ec) {
      if (ec || generation != self->read_timer_generation_) return;
      self->read_timed_out_ = true;
      error_code ignored;
      self->client_.socket().cancel(ignored);
    });
  }

  void stop_read_timer() {
    if (!read_timer_armed_) return;
    read_timer_armed_ = false;
    ++read_timer_generation_;
    read_timer_.cancel();
  }

  void on_read_head(error_code ec, std::size_t n) {
    buffer_.commit(n);
    idle_ = false;
    if (ec) {
      // A head that did not complete in time is a slow client: tell it. Anything else (EOF
      // between requests, reset, idle expiry, drained) just ends the connection.
      if (read_timed_out_ && buffer_.size() > 0) {
        return respond_error(408, "The request header was not received in time.", true);
      }
      stop_read_timer();
      return close();
    }
    if (try_parse_buffered_head()) return;
    std::string_view data(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    if (cannot_be_request(data)) {
      // TLS handshakes and other protocols: answer at once instead of waiting for a CRLF.
      stop_read_timer();
      server_.stats.bad_requests.fetch_add(1, std::memory_order_relaxed);
      return respond_error(400, "This is not an HTTP/1.1 request.", true);
    }
    if (buffer_.size() > settings().limits.max_header_bytes) {
      stop_read_timer();
      return respond_error(431, "The request header is too large.", true);
    }
    start_read_timer(settings().timeouts.header_read);
    client_.async_read_some(buffer_.prepare(kReadChunk),
                            beast::bind_front_handler(&Session::on_read_head, shared_from_this()));
  }

  // Returns true when a complete head was in the buffer and its handling has started.
  bool try_parse_buffered_head() {
    if (buffer_.size() == 0) return false;
    std::string_view data(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    std::size_t head_size = find_head_end(data);
    if (head_size == 0) return false;
    stop_read_timer();
    if (head_size > settings().limits.max_header_bytes) {
      respond_error(431, "The request header is too large.", true);
      return true;
    }
    // Strip the empty lines a client may send before a request, then keep a stable copy: the
    // RequestView and the log refer to it while the buffer moves on.
    std::size_t skip = 0;
    while (skip < head_size && (data[skip] == '\r' || data[skip] == '\n')) ++skip;
    head_storage_.assign(data.substr(skip, head_size - skip));
    buffer_.consume(head_size);
    on_head();
    return true;
  }

  void on_head() {
    start_time_ = std::chrono::system_clock::now();
    start_steady_ = std::chrono::steady_clock::now();
    first_request_ = false;
    server_.stats.requests.fetch_add(1, std::memory_order_relaxed);
    snapshot_ = server_.load_snapshot();

    std::optional<HeadError> error = parse_request_head(head_storage_, head_);
    view_.method = head_.method;
    view_.target = head_.target;
    view_.version = head_.version;
    view_.headers = head_.headers;
    view_.peer_ip = peer_;
    view_.client_ip = resolve_client_ip(peer_, head_.headers, settings().trusted_proxies);
    view_.now = start_time_;
    peer_trusted_ = is_trusted(peer_, settings().trusted_proxies);

    std::string_view offered_id = peer_trusted_ ? view_.header(settings().request_id_header)
                                                : std::string_view{};
    context_.request_id = is_acceptable_request_id(offered_id) ? std::string(offered_id)
                                                               : generate_request_id();
    if (error) {
      server_.stats.bad_requests.fetch_add(1, std::memory_order_relaxed);
      // Never forward or keep a connection whose framing we could not trust.
      return respond_error(error->status, error->reason, true);
    }
    keep_alive_ = head_.keep_alive();
    std::uint64_t max_body = settings().limits.max_body_bytes;
    if (max_body != 0 && head_.content_length && *head_.content_length > max_body) {
      return respond_error(413, "The request body is too large.", true);
    }
    if (head_.connection_upgrade && settings().websocket == WebSocketPolicy::kRefuse) {
      return respond_error(501, "Protocol upgrades (WebSocket) are not supported here.", true);
    }
    stage_index_ = 0;
    run_pipeline();
  }

  // ---- pipeline ------------------------------------------------------------------------------

  void run_pipeline() {
    const Pipeline& pipeline = snapshot_->pipeline;
    while (stage_index_ < pipeline.size()) {
      StageVerdict verdict = pipeline.at(stage_index_).evaluate(view_, context_, make_resume());
      if (verdict == StageVerdict::kSuspend) {
        // Nothing else holds a suspended session: it keeps itself until resumed or drained.
        suspended_self_ = shared_from_this();
        return;
      }
      if (verdict == StageVerdict::kRespond) return respond_local();
      ++stage_index_;
    }
    forward();
  }

  ResumeFn make_resume() {
    // A copyable callback that resumes at most once, on this session's strand. It never holds
    // the session: the session outlives it only through suspended_self_, and the token, which
    // the session invalidates under its mutex when it ends, guards the post. So a late callback
    // on a stage's own thread can neither keep a drained session alive nor destroy it there.
    if (!resume_token_) {
      resume_token_ = std::make_shared<ResumeToken>();
      resume_token_->executor = client_.get_executor();
      resume_token_->session = weak_from_this();
    }
    auto token = resume_token_;
    auto fired = std::make_shared<std::atomic<bool>>(false);
    return [token, fired](StageVerdict verdict) {
      if (fired->exchange(true)) return;
      std::lock_guard lock(token->mutex);
      if (!token->alive) return;
      net::post(token->executor, [weak = token->session, verdict] {
        if (auto self = weak.lock()) self->on_resumed(verdict);
      });
    };
  }

  void on_resumed(StageVerdict verdict) {
    if (!suspended_self_) return;  // drained meanwhile
    suspended_self_.reset();
    if (verdict == StageVerdict::kRespond) return respond_local();
    ++stage_index_;
    run_pipeline();
  }

  // ---- local answers ------------------------------------------------------------------------

  void respond_error(int status, std::string_view detail, bool close) {
    // Errors found before the head was parsed still get an id and a time for the log.
    if (context_.request_id.empty()) context_.request_id = generate_request_id();
    if (start_time_.time_since_epoch().count() == 0) {
      start_time_ = std::chrono::system_clock::now();
      start_steady_ = std::chrono::steady_clock::now();
    }
    context_.response = error_response(status, context_.request_id, detail, close);
    respond_local();
  }

  void respond_local() {
    server_.stats.local_responses.fetch_add(1, std::memory_order_relaxed);
    LocalResponse& local = *context_.response;
    // A body we did not read would be taken for the next request: close instead.
    if (local.close || head_.has_body() || draining_) keep_alive_ = false;
    local_response_.emplace();
    auto& res = *local_response_;
    res.version(head_.version == 10 ? 10 : 11);
    res.result(static_cast<unsigned>(local.status));
    res.set(http::field::server, "crawlgate");
    res.set(http::field::content_type, local.content_type);
    res.set(settings().request_id_header, context_.request_id);
    res.set(http::field::cache_control, "no-store");
    for (const auto& [name, value] : local.headers) res.insert(name, value);
    res.body() = std::move(local.body);
    res.prepare_payload();
    res.keep_alive(keep_alive_);
    // Say it explicitly, HTTP/1.0 included: the client must not send more on this connection.
    if (!keep_alive_) res.set(http::field::connection, "close");
    status_ = local.status;
    bool head_only = head_.method == "HEAD";
    bytes_sent_ = head_only ? 0 : res.body().size();
    local_serializer_.emplace(res);
    if (local.delay.count() > 0) {
      // Tarpit: the answer waits on a timer; the connection costs a socket and a few hundred
      // bytes meanwhile, and no thread.
      hold_ = std::move(local.hold);
      hold_timer_.expires_after(local.delay);
      return hold_timer_.async_wait([self = shared_from_this(), head_only](error_code ec) {
        if (ec) return self->close();
        self->write_local(head_only);
      });
    }
    write_local(head_only);
  }

  void write_local(bool head_only) {
    client_.expires_after(settings().timeouts.client_write);
    if (head_only) {
      http::async_write_header(
          client_, *local_serializer_,
          beast::bind_front_handler(&Session::on_local_written, shared_from_this()));
    } else {
      http::async_write(client_, *local_serializer_,
                        beast::bind_front_handler(&Session::on_local_written, shared_from_this()));
    }
  }

  void on_local_written(error_code ec, std::size_t) {
    hold_.reset();
    if (ec) {
      status_ = 499;
      keep_alive_ = false;
    }
    finish_request();
  }

  // ---- relaying to the upstream ------------------------------------------------------------

  void forward() {
    build_upstream_request();
    const UpstreamSettings& upstream = settings().upstream;
    error_code ec;
    auto address = net::ip::make_address(upstream.address.host, ec);
    if (!ec) {
      endpoint_ = tcp::endpoint(address, upstream.address.port);
      return acquire_upstream();
    }
    // A host name: resolve asynchronously (only when no pooled connection can be reused).
    resolver_.emplace(worker_.ioc);
    resolver_->async_resolve(
        upstream.address.host, std::to_string(upstream.address.port),
        [self = shared_from_this()](error_code ec, tcp::resolver::results_type results) {
          if (ec || results.empty()) return self->fail_upstream(ec, "resolve");
          self->endpoint_ = results.begin()->endpoint();
          self->acquire_upstream();
        });
  }

  void build_upstream_request() {
    auto& req = upstream_request_.emplace();
    req.method_string(head_.method);
    if (head_.origin_target.starts_with("?")) {
      rebuilt_target_ = "/";
      rebuilt_target_.append(head_.origin_target);
      req.target(rebuilt_target_);
    } else {
      req.target(head_.origin_target);
    }
    req.version(11);
    std::string_view forwarded_for, forwarded_proto, forwarded_host;
    bool host_written = false;
    for (const HeaderField& field : head_.headers) {
      std::string_view name = field.name;
      if (is_hop_by_hop(name) || named_in(name, head_.connection_tokens)) continue;
      if (iequals(name, "expect")) continue;  // crawlgate answers 100-continue itself
      if (iequals(name, settings().request_id_header)) continue;
      if (iequals(name, "x-forwarded-for")) {
        if (peer_trusted_) forwarded_for = field.value;  // the last one; chained below
        continue;
      }
      if (iequals(name, "x-forwarded-proto")) {
        if (peer_trusted_) forwarded_proto = field.value;
        continue;
      }
      if (iequals(name, "x-forwarded-host")) {
        if (peer_trusted_) forwarded_host = field.value;
        continue;
      }
      if (iequals(name, "host")) {
        // Absolute-form: its authority replaces Host (RFC 9112 §3.2.2).
        req.insert(http::field::host, head_.host);
        host_written = true;
        continue;
      }
      req.insert(name, field.value);
    }
    if (!host_written) {
      req.insert(http::field::host,
                 head_.host_from_target ? std::string(head_.host)
                                        : settings().upstream.address.to_string());
    }
    if (head_.connection_upgrade) {
      req.set(http::field::connection, "upgrade");
      req.set(http::field::upgrade, view_.header("upgrade"));
    }
    // A trusted proxy's chain is extended; anyone else's claims are replaced by what we saw.
    std::string peer_text = peer_.to_string();
    if (!forwarded_for.empty()) {
      std::string chain(forwarded_for);
      chain.append(", ").append(peer_text);
      req.set("X-Forwarded-For", chain);
    } else {
      req.set("X-Forwarded-For", peer_text);
    }
    req.set("X-Forwarded-Proto", forwarded_proto.empty() ? std::string_view("http")
                                                         : forwarded_proto);
    req.set("X-Forwarded-Host", forwarded_host.empty() ? head_.host : forwarded_host);
    req.set(settings().request_id_header, context_.request_id);
    if (head_.chunked) {
      req.chunked(true);
    } else if (head_.content_length) {
      req.content_length(*head_.content_length);
    }
    req.body().data = nullptr;
    req.body().size = 0;
    req.body().more = head_.has_body();
  }

  void acquire_upstream() {
    if (std::optional<UpstreamPool::Connection> pooled = worker_.pool.acquire(endpoint_)) {
      upstream_.emplace(std::move(pooled->socket));
      upstream_buffer_ = std::move(pooled->buffer);
      upstream_reused_ = true;
      server_.stats.upstream_reused.fetch_add(1, std::memory_order_relaxed);
      return write_upstream_head();
    }
    connect_upstream();
  }

  void connect_upstream() {
    upstream_reused_ = false;
    upstream_.emplace(worker_.ioc);
    upstream_->expires_after(settings().upstream.connect_timeout);
    upstream_->async_connect(endpoint_, [self = shared_from_this()](error_code ec) {
      if (ec) return self->fail_upstream(ec, "connect");
      error_code ignored;
      self->upstream_->socket().set_option(tcp::no_delay(true), ignored);
      self->write_upstream_head();
    });
  }

  void write_upstream_head() {
    upstream_serializer_.emplace(*upstream_request_);
    upstream_->expires_after(settings().upstream.response_timeout);
    http::async_write_header(
        *upstream_, *upstream_serializer_,
        beast::bind_front_handler(&Session::on_upstream_head_written, shared_from_this()));
  }

  void on_upstream_head_written(error_code ec, std::size_t) {
    if (ec) return fail_upstream(ec, "write");
    if (!head_.has_body()) return read_upstream_response();
    request_body_started_ = true;
    request_parser_.emplace();
    request_parser_->header_limit(static_cast<std::uint32_t>(head_storage_.size() + 1));
    std::uint64_t max_body = settings().limits.max_body_bytes;
    request_parser_->body_limit(max_body == 0 ? kNoBodyLimit : max_body);
    // Let Beast's parser decode the body framing we already validated: give it the head.
    error_code put_ec;
    request_parser_->put(net::buffer(head_storage_.data(), head_storage_.size()), put_ec);
    if (put_ec || !request_parser_->is_header_done()) {
      return respond_error(400, "The request could not be framed.", true);
    }
    relay_buffer_ = RelayBuffer::acquire();
    body_started_ = std::chrono::steady_clock::now();
    body_received_ = 0;
    // Beast reads only into the buffer's free capacity (512 bytes at the least): give it room,
    // or a large body moves in 512-byte steps.
    buffer_.reserve(kRelayBufferSize);
    if (head_.expect_continue) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      client_.expires_after(settings().timeouts.client_write);
      return net::async_write(client_, net::buffer(kContinue.data(), kContinue.size()),
                              [self = shared_from_this()](error_code ec, std::size_t) {
                                if (ec) return self->abort_both();
                                self->read_request_body();
                              });
    }
    read_request_body();
  }

  void read_request_body() {
    if (request_parser_->is_done()) return write_request_body(0);
    request_parser_->get().body().data = relay_buffer_.get();
    request_parser_->get().body().size = kRelayBufferSize;
    start_read_timer(settings().timeouts.body_read);
    http::async_read_some(client_, buffer_, *request_parser_,
                          beast::bind_front_handler(&Session::on_request_body_read,
                                                    shared_from_this()));
  }

  void on_request_body_read(error_code ec, std::size_t) {
    stop_read_timer();
    if (read_timed_out_) {
      read_timed_out_ = false;
      if (ec == net::error::operation_aborted) ec = beast::error::timeout;
    }
    if (ec == http::error::need_buffer) ec = {};
    if (ec == http::error::body_limit) {
      close_upstream();
      return respond_error(413, "The request body is too large.", true);
    }
    if (ec) {
      // The client went away or sent a broken body: the upstream got a partial request, so
      // that connection is spoiled too.
      if (ec == beast::error::timeout) {
        close_upstream();
        return respond_error(408, "The request body was not received in time.", true);
      }
      // Any other parse error is a malformed chunked body: a bad chunk line, or a trailer that
      // is not a field (a request line after "0\r\n") or that carries Content-Length. Only the
      // client ending the connection mid-body leaves nobody to answer.
      if (ec.category() == http::make_error_code(http::error::bad_chunk).category() &&
          ec != http::error::partial_message && ec != http::error::end_of_stream) {
        close_upstream();
        server_.stats.bad_requests.fetch_add(1, std::memory_order_relaxed);
        return respond_error(400, "The chunked request body is malformed.", true);
      }
      return abort_both();
    }
    std::size_t n = kRelayBufferSize - request_parser_->get().body().size;
    body_received_ += n;
    if (too_slow_body()) {
      close_upstream();
      return respond_error(408, "The request body arrived too slowly.", true);
    }
    write_request_body(n);
  }

  // Slow POST: a body trickled in just under the per-read timeout would hold a connection and an
  // upstream connection for ever. Past timeouts.body_read, it must average min_body_rate.
  bool too_slow_body() const {
    std::uint64_t min_rate = settings().limits.min_body_rate;
    if (min_rate == 0 || request_parser_->is_done()) return false;
    auto elapsed = std::chrono::steady_clock::now() - body_started_;
    if (elapsed < settings().timeouts.body_read) return false;
    double seconds = std::chrono::duration<double>(elapsed).count();
    return static_cast<double>(body_received_) / seconds < static_cast<double>(min_rate);
  }

  void write_request_body(std::size_t n) {
    auto& body = upstream_request_->body();
    body.data = n ? relay_buffer_.get() : nullptr;
    body.size = n;
    body.more = !request_parser_->is_done();
    upstream_->expires_after(settings().upstream.response_timeout);
    http::async_write(*upstream_, *upstream_serializer_,
                      beast::bind_front_handler(&Session::on_request_body_written,
                                                shared_from_this()));
  }

  void on_request_body_written(error_code ec, std::size_t) {
    if (ec == http::error::need_buffer) ec = {};
    if (ec && ec != beast::error::timeout && !upstream_answered_early_) {
      // The upstream may have answered (413, 401, 501...) and closed before taking the whole
      // body: relay that answer rather than a 502, and close the client connection, whose
      // unread body would otherwise be taken for the next request.
      upstream_answered_early_ = true;
      keep_alive_ = false;
      return read_upstream_response();
    }
    if (ec) return fail_upstream(ec, "write");
    if (!request_parser_->is_done()) return read_request_body();
    if (!upstream_serializer_->is_done()) return write_request_body(0);
    read_upstream_response();
  }

  void read_upstream_response() {
    if (upstream_sent_at_ == std::chrono::steady_clock::time_point{}) {
      upstream_sent_at_ = std::chrono::steady_clock::now();
    }
    response_parser_.emplace();
    response_parser_->header_limit(
        static_cast<std::uint32_t>(settings().limits.max_response_header_bytes));
    response_parser_->body_limit(kNoBodyLimit);
    if (head_.method == "HEAD") response_parser_->skip(true);
    // One read can then take the head and a typical page together. The cap turns a backend's
    // endless chunk line into a 502 rather than memory, as bound_buffer() does for clients.
    upstream_buffer_.max_size(
        std::max({settings().limits.max_response_header_bytes, kRelayBufferSize,
                  upstream_buffer_.size()}) +
        kRelayBufferSize);
    upstream_buffer_.reserve(kRelayBufferSize);
    upstream_->expires_after(settings().upstream.response_timeout);
    http::async_read_header(*upstream_, upstream_buffer_, *response_parser_,
                            beast::bind_front_handler(&Session::on_upstream_response_head,
                                                      shared_from_this()));
  }

  void on_upstream_response_head(error_code ec, std::size_t) {
    if (ec) return fail_upstream(ec, "read");
    auto& upstream_response = response_parser_->get();
    unsigned status = upstream_response.result_int();
    if (status == 101 && head_.connection_upgrade) return start_tunnel();
    if (status >= 100 && status < 200) {
      // Interim answers (100, 103): crawlgate handles Expect itself; drop them and read on.
      return read_upstream_response();
    }
    status_ = static_cast<int>(status);
    from_upstream_ = true;
    upstream_seconds_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - upstream_sent_at_).count();
    upstream_keep_alive_ = upstream_response.keep_alive();

    auto& res = client_response_.emplace();
    res.version(head_.version == 10 ? 10 : 11);
    res.result(status);
    res.reason(upstream_response.reason());
    std::vector<std::string_view> options = connection_tokens(upstream_response);
    for (const auto& field : upstream_response) {
      std::string_view name = field.name_string();
      if (is_hop_by_hop(name) || named_in(name, options)) continue;
      res.insert(name, field.value());
    }
    bool no_body = head_.method == "HEAD" || status == 204 || status == 304;
    response_has_body_ = !no_body;
    if (!no_body) {
      if (response_parser_->chunked() || !response_parser_->content_length()) {
        // Re-frame: chunked for HTTP/1.1 clients, close-delimited for HTTP/1.0 ones.
        res.erase(http::field::content_length);
        if (head_.version == 10) {
          keep_alive_ = false;
        } else {
          res.chunked(true);
        }
      }
    }
    if (draining_) keep_alive_ = false;
    res.keep_alive(keep_alive_);
    res.body().data = nullptr;
    res.body().size = 0;
    res.body().more = response_has_body_;
    client_serializer_.emplace(res);
    if (response_has_body_ && upstream_buffer_.size() > 0) {
      // Body bytes arrived with the head: parse them (no system call) and send head and body in
      // one gather write. A body still to come does not hold the head back.
      if (!relay_buffer_) relay_buffer_ = RelayBuffer::acquire();
      return read_response_body();
    }
    client_.expires_after(settings().timeouts.client_write);
    http::async_write_header(
        client_, *client_serializer_,
        beast::bind_front_handler(&Session::on_client_head_written, shared_from_this()));
  }

  void on_client_head_written(error_code ec, std::size_t) {
    if (ec) return abort_both();
    if (!response_has_body_) {
      // HEAD/204/304 or a parser told to skip: nothing more will come on this response.
      return finish_upstream_exchange();
    }
    if (!relay_buffer_) relay_buffer_ = RelayBuffer::acquire();
    read_response_body();
  }

  void read_response_body() {
    if (response_parser_->is_done()) return write_response_body(0);
    response_parser_->get().body().data = relay_buffer_.get();
    response_parser_->get().body().size = kRelayBufferSize;
    upstream_->expires_after(settings().upstream.response_timeout);
    http::async_read_some(*upstream_, upstream_buffer_, *response_parser_,
                          beast::bind_front_handler(&Session::on_response_body_read,
                                                    shared_from_this()));
  }

  void on_response_body_read(error_code ec, std::size_t) {
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      // The header is already out: the only honest signal left is closing the connection.
      server_.stats.upstream_resets.fetch_add(1, std::memory_order_relaxed);
      status_ = status_ ? status_ : 502;
      return abort_both();
    }
    write_response_body(kRelayBufferSize - response_parser_->get().body().size);
  }

  void write_response_body(std::size_t n) {
    auto& body = client_response_->body();
    body.data = n ? relay_buffer_.get() : nullptr;
    body.size = n;
    body.more = !response_parser_->is_done();
    bytes_sent_ += n;
    client_.expires_after(settings().timeouts.client_write);
    http::async_write(client_, *client_serializer_,
                      beast::bind_front_handler(&Session::on_response_body_written,
                                                shared_from_this()));
  }

  void on_response_body_written(error_code ec, std::size_t) {
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return abort_both();
    if (!response_parser_->is_done()) return read_response_body();
    if (!client_serializer_->is_done()) return write_response_body(0);
    finish_upstream_exchange();
  }

  void finish_upstream_exchange() {
    bool reusable = upstream_keep_alive_ && response_parser_->is_done() &&
                    !response_parser_->need_eof() && upstream_buffer_.size() == 0 &&
                    (!request_parser_ || request_parser_->is_done());
    if (reusable) {
      upstream_->expires_never();
      worker_.pool.release({upstream_->release_socket(), std::move(upstream_buffer_)}, endpoint_);
      upstream_buffer_ = beast::flat_buffer{};
    } else {
      close_upstream();
    }
    upstream_.reset();
    finish_request();
  }

  // ---- WebSocket and other upgrades: a byte tunnel after the 101 ---------------------------

  void start_tunnel() {
    server_.stats.websocket_tunnels.fetch_add(1, std::memory_order_relaxed);
    status_ = 101;
    keep_alive_ = false;
    auto& upstream_response = response_parser_->get();
    auto& res = client_response_.emplace();
    res.version(11);
    res.result(http::status::switching_protocols);
    for (const auto& field : upstream_response) res.insert(field.name_string(), field.value());
    res.body().more = false;
    client_serializer_.emplace(res);
    client_.expires_after(settings().timeouts.client_write);
    http::async_write_header(client_, *client_serializer_,
                             [self = shared_from_this()](error_code ec, std::size_t) {
                               if (ec) return self->abort_both();
                               self->log_request();
                               self->tunnel_pump(true);
                               self->tunnel_pump(false);
                             });
  }

  // Moves bytes one way: client->upstream when `upstream_bound`, else upstream->client. Bytes
  // the parsers had already buffered go first.
  void tunnel_pump(bool upstream_bound) {
    beast::flat_buffer& pending = upstream_bound ? buffer_ : upstream_buffer_;
    beast::tcp_stream& to = upstream_bound ? *upstream_ : client_;
    beast::tcp_stream& from = upstream_bound ? client_ : *upstream_;
    auto self = shared_from_this();
    if (pending.size() > 0) {
      to.expires_after(settings().timeouts.idle_keepalive);
      net::async_write(to, pending.data(), [self, upstream_bound](error_code ec, std::size_t n) {
        if (ec) return self->abort_both();
        (upstream_bound ? self->buffer_ : self->upstream_buffer_).consume(n);
        self->tunnel_pump(upstream_bound);
      });
      return;
    }
    from.expires_after(settings().timeouts.idle_keepalive);
    from.async_read_some(pending.prepare(16 * 1024),
                         [self, upstream_bound](error_code ec, std::size_t n) {
                           (upstream_bound ? self->buffer_ : self->upstream_buffer_).commit(n);
                           if (ec) return self->abort_both();
                           self->tunnel_pump(upstream_bound);
                         });
  }

  // ---- errors and endings -------------------------------------------------------------------

  void count_upstream_error(error_code ec) {
    if (ec == beast::error::timeout) {
      server_.stats.upstream_timeouts.fetch_add(1, std::memory_order_relaxed);
    } else {
      server_.stats.upstream_errors.fetch_add(1, std::memory_order_relaxed);
    }
  }

  void fail_upstream(error_code ec, std::string_view stage) {
    // A pooled connection the upstream closed just as we reused it: the request never reached
    // the application. One fresh attempt is safe for an idempotent request without a body
    // (RFC 9110 §9.2.2); anything else gets its 502.
    bool retry = upstream_reused_ && !request_body_started_ && ec != beast::error::timeout &&
                 (stage == "write" || stage == "read") && is_idempotent(head_.method);
    close_upstream();
    if (retry) {
      response_parser_.reset();
      upstream_buffer_.clear();
      return connect_upstream();
    }
    if (stage == "connect" || stage == "resolve") {
      server_.stats.upstream_connect_errors.fetch_add(1, std::memory_order_relaxed);
      return respond_error(502, "The site behind this proxy could not be reached.", true);
    }
    count_upstream_error(ec);
    if (ec == beast::error::timeout) {
      return respond_error(504, "The site behind this proxy did not answer in time.", true);
    }
    respond_error(502, "The site behind this proxy gave an invalid or no answer.", true);
  }

  void close_upstream() {
    if (!upstream_) return;
    error_code ignored;
    upstream_->socket().shutdown(tcp::socket::shutdown_both, ignored);
    upstream_->socket().close(ignored);
  }

  void abort_both() {
    close_upstream();
    keep_alive_ = false;
    if (status_ == 0) status_ = 499;
    if (!logged_) log_request();
    close();
  }

  void finish_request() {
    log_request();
    if (!keep_alive_ || draining_) return close();
    do_read_head();
  }

  void log_request() {
    logged_ = true;
    double duration_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_steady_)
            .count();
    if (server_.metrics) record_metrics(duration_ms / 1000);
    // The 404 share is a feature: the status is known only now.
    if (snapshot_->behaviour && context_.score >= 0) {
      snapshot_->behaviour->report_status(view_.client_ip, status_);
    }
    worker_.decisions.record(
        view_.client_ip, std::chrono::duration<double>(start_time_.time_since_epoch()).count(),
        status_, context_.enforced, context_.request_id, context_.traffic_class, context_.rule,
        context_.action.empty() ? std::string_view("allow") : std::string_view(context_.action),
        head_.method, head_.target);
    if (!server_.access_log.enabled()) return;
    AccessLogEntry entry;
    entry.start = start_time_;
    entry.client = view_.client_ip;
    entry.peer = peer_;
    entry.method = head_.method;
    entry.target = head_.target;
    entry.version = head_.version;
    entry.headers = head_.headers;
    entry.status = status_;
    entry.bytes = bytes_sent_;
    entry.duration_ms = duration_ms;
    entry.request_id = context_.request_id;
    entry.context = &context_;
    if (entry.method.empty()) {
      // The head could not be parsed: log what can be said without echoing garbage.
      entry.method = "-";
      entry.target = "-";
    }
    server_.access_log.log(entry);
  }

  void record_metrics(double duration_seconds) {
    metrics::Metrics::RequestRecord record;
    const metrics::ConfigLabels* labels = snapshot_->labels.get();
    record.labels = labels;
    if (labels) {
      record.class_index = context_.rule_index != UINT32_MAX
                               ? labels->rule_class_index(context_.rule_index)
                               : labels->class_index(context_.traffic_class);
    }
    record.rule_index = context_.rule_index;
    if (context_.action.empty()) {
      // Nothing decided: a protocol error crawlgate answered itself, or plain traffic.
      record.action = (!from_upstream_ && status_ >= 400) ? metrics::RequestAction::kError
                                                          : metrics::RequestAction::kAllow;
    } else {
      record.action = metrics::parse_request_action(context_.action);
    }
    record.enforced = context_.enforced;
    if (!context_.shadow_rule.empty() && snapshot_->rules) {
      record.shadow_rule_matched = true;
      record.shadow_rule_index = context_.shadow_rule_index;
    }
    record.status = status_;
    record.from_upstream = from_upstream_;
    record.bytes = bytes_sent_;
    record.duration_seconds = duration_seconds;
    record.upstream_seconds = from_upstream_ ? upstream_seconds_ : -1;
    server_.metrics->record(record);
    if (context_.score >= 0) server_.metrics->model_score().observe(context_.score);
  }

  void close() {
    stop_read_timer();
    hold_timer_.cancel();
    hold_.reset();
    error_code ignored;
    client_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    client_.socket().close(ignored);
    close_upstream();
  }

  void reset_request() {
    head_ = RequestHead{};
    view_ = RequestView{};
    context_ = RequestContext{};
    snapshot_ = server_.load_snapshot();
    status_ = 0;
    bytes_sent_ = 0;
    from_upstream_ = false;
    upstream_seconds_ = -1;
    upstream_sent_at_ = {};
    start_time_ = {};
    logged_ = false;
    read_timed_out_ = false;
    request_body_started_ = false;
    upstream_answered_early_ = false;
    upstream_reused_ = false;
    upstream_keep_alive_ = false;
    response_has_body_ = false;
    request_parser_.reset();
    response_parser_.reset();
    upstream_serializer_.reset();
    upstream_request_.reset();
    client_serializer_.reset();
    client_response_.reset();
    local_serializer_.reset();
    local_response_.reset();
    relay_buffer_.reset();
    // The upstream buffer left with its pooled connection, or is dropped with a spent one. The
    // client buffer is shrunk only after a body or a large head grew it: idle keep-alive
    // connections hold a few KiB at most.
    upstream_buffer_ = beast::flat_buffer{};
    if (buffer_.size() == 0 && buffer_.capacity() > 16 * 1024) buffer_.shrink_to_fit();
    upstream_.reset();
    resolver_.reset();
  }

  const ServerSettings& settings() const { return snapshot_->settings; }

  Server::Impl& server_;
  Worker& worker_;
  beast::tcp_stream client_;
  std::optional<IpAddress> counted_;
  beast::flat_buffer buffer_;
  IpAddress peer_;
  std::shared_ptr<Session> suspended_self_;
  struct ResumeToken {
    std::mutex mutex;
    bool alive = true;
    net::any_io_executor executor;
    std::weak_ptr<Session> session;
  };
  std::shared_ptr<ResumeToken> resume_token_;
  bool first_request_ = true;
  bool draining_ = false;
  bool idle_ = false;
  bool read_timer_armed_ = false;
  bool read_timed_out_ = false;
  std::uint64_t read_timer_generation_ = 0;
  net::steady_timer read_timer_{worker_.ioc};

  // Per request.
  std::shared_ptr<const Snapshot> snapshot_ = server_.load_snapshot();
  std::string head_storage_;
  RequestHead head_;
  RequestView view_;
  RequestContext context_;
  std::size_t stage_index_ = 0;
  std::chrono::system_clock::time_point start_time_;
  std::chrono::steady_clock::time_point start_steady_;
  bool peer_trusted_ = false;
  bool keep_alive_ = false;
  int status_ = 0;
  std::uint64_t bytes_sent_ = 0;
  bool logged_ = false;
  bool from_upstream_ = false;
  double upstream_seconds_ = -1;
  std::chrono::steady_clock::time_point upstream_sent_at_;

  std::optional<http::response<http::string_body>> local_response_;
  net::steady_timer hold_timer_{worker_.ioc};
  std::shared_ptr<void> hold_;
  std::optional<http::response_serializer<http::string_body>> local_serializer_;

  tcp::endpoint endpoint_;
  std::optional<tcp::resolver> resolver_;
  std::optional<beast::tcp_stream> upstream_;
  bool upstream_reused_ = false;
  bool upstream_keep_alive_ = false;
  bool request_body_started_ = false;
  bool upstream_answered_early_ = false;
  std::chrono::steady_clock::time_point body_started_;
  std::uint64_t body_received_ = 0;
  bool response_has_body_ = false;
  std::string rebuilt_target_;
  beast::flat_buffer upstream_buffer_;
  RelayBuffer relay_buffer_;
  std::optional<http::request<http::buffer_body>> upstream_request_;
  std::optional<http::request_serializer<http::buffer_body>> upstream_serializer_;
  std::optional<http::request_parser<http::buffer_body>> request_parser_;
  std::optional<http::response_parser<http::buffer_body>> response_parser_;
  std::optional<http::response<http::buffer_body>> client_response_;
  std::optional<http::response_serializer<http::buffer_body>> client_serializer_;
};

void start_session(Server::Impl& server, Worker& worker, tcp::socket socket,
                   std::optional<IpAddress> counted) {
  std::make_shared<Session>(server, worker, std::move(socket), counted)->start();
}

void drain_session(Session* session) { session->drain(); }

}  // namespace crawlgate::proxy
