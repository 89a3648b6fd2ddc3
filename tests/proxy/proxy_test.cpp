// The proxy core through real sockets on 127.0.0.1: crawlgate in-process, a Beast backend.
#include <gtest/gtest.h>

#include <boost/beast/websocket.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "test_support.h"

namespace crawlgate::test {
namespace {

class ProxyTest : public ::testing::Test {
 protected:
  void start(ServerSettings settings = test_settings()) {
    proxy_ = std::make_unique<RunningProxy>(backend_.port(), std::move(settings));
  }
  uint16_t port() const { return proxy_->port(); }

  TestBackend backend_;
  std::unique_ptr<RunningProxy> proxy_;
};

// The access log is written after the response went out: wait (bounded) for `count` lines.
std::vector<std::string> wait_for_log_lines(proxy::Server& server, const std::string& path,
                                            std::size_t count) {
  std::vector<std::string> lines;
  for (int attempt = 0; attempt < 500; ++attempt) {
    server.access_log().flush();
    lines.clear();
    std::ifstream log(path);
    for (std::string line; std::getline(log, line);) lines.push_back(line);
    if (lines.size() >= count) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return lines;
}

std::string echoed_header(const Response& response, std::string_view name) {
  std::istringstream lines(response.body);
  std::string line;
  std::string prefix = std::string(name) + ": ";
  while (std::getline(lines, line) && !line.empty()) {
    if (line.size() >= prefix.size() && iequals(line.substr(0, prefix.size()), prefix)) {
      return line.substr(prefix.size());
    }
  }
  return "<absent>";
}

TEST_F(ProxyTest, GetRoundTripPreservesHostAndAddsForwardingHeaders) {
  start();
  auto response = request(port(), get_request("/echo/page?x=1", "Accept: text/html\r\n"));
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_TRUE(response->body.starts_with("GET /echo/page?x=1\n")) << response->body;
  EXPECT_EQ(echoed_header(*response, "Host"), "test.local");
  EXPECT_EQ(echoed_header(*response, "Accept"), "text/html");
  EXPECT_EQ(echoed_header(*response, "X-Forwarded-For"), "127.0.0.1");
  EXPECT_EQ(echoed_header(*response, "X-Forwarded-Proto"), "http");
  EXPECT_EQ(echoed_header(*response, "X-Forwarded-Host"), "test.local");
  EXPECT_EQ(echoed_header(*response, "X-Request-Id").size(), 32u);
}

TEST_F(ProxyTest, HeadReturnsHeadersWithoutBody) {
  start();
  RawClient client(port());
  client.send("HEAD /stream?bytes=5000 HTTP/1.1\r\nHost: a\r\n\r\n");
  auto response = client.read_response(/*head_request=*/true);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->header("Content-Length"), "5000");
  EXPECT_TRUE(response->body.empty());
  // The connection stays usable: no stray body bytes were sent.
  client.send(get_request("/after-head"));
  auto next = client.read_response();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->body, "ok /after-head");
}

TEST_F(ProxyTest, PostBodyArrivesIdentical) {
  start();
  std::string body(300'000, '\0');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 31 % 251);
  std::string raw = "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Type: application/octet-stream\r\n"
                    "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  auto response = request(port(), raw);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  std::size_t split = response->body.find("\n\n");
  ASSERT_NE(split, std::string::npos);
  EXPECT_EQ(response->body.substr(split + 2), body);
  EXPECT_EQ(echoed_header(*response, "Content-Length"), std::to_string(body.size()));
}

TEST_F(ProxyTest, ChunkedRequestBodyIsForwardedChunked) {
  start();
  auto response = request(port(), "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(echoed_header(*response, "Transfer-Encoding"), "chunked");
  EXPECT_TRUE(response->body.ends_with("\n\nhello, world")) << response->body;
}

TEST_F(ProxyTest, ChunkedResponseIsRelayedChunkedToHttp11AndCloseDelimitedToHttp10) {
  start();
  auto response = request(port(), get_request("/stream?bytes=200000&chunked=1"));
  ASSERT_TRUE(response);
  EXPECT_EQ(response->header("Transfer-Encoding"), "chunked");
  ASSERT_EQ(response->body.size(), 200000u);
  for (std::size_t i = 0; i < response->body.size(); ++i) {
    ASSERT_EQ(response->body[i], pattern_byte(i)) << "at " << i;
  }

  RawClient old_client(port());
  old_client.send("GET /stream?bytes=1000&chunked=1 HTTP/1.0\r\n\r\n");
  auto old_response = old_client.read_response();
  ASSERT_TRUE(old_response);
  EXPECT_FALSE(old_response->has_header("Transfer-Encoding"));
  EXPECT_EQ(old_response->body.size(), 1000u);
  EXPECT_TRUE(old_client.closed_by_peer());
}

TEST_F(ProxyTest, KeepAliveReusesConnectionsOnBothSides) {
  start([] {
    auto settings = test_settings();
    settings.threads = 1;  // one pool, so reuse is deterministic
    return settings;
  }());
  RawClient client(port());
  for (int i = 0; i < 5; ++i) {
    client.send(get_request("/n" + std::to_string(i)));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body, "ok /n" + std::to_string(i));
  }
  EXPECT_EQ(backend_.requests(), 5);
  EXPECT_EQ(backend_.connections(), 1);
  EXPECT_EQ(proxy_->server().stats().connections_accepted.load(), 1u);
  EXPECT_GE(proxy_->server().stats().upstream_reused.load(), 4u);
}

TEST_F(ProxyTest, PipelinedRequestsAreAnsweredInOrder) {
  start();
  RawClient client(port());
  client.send(get_request("/p1") + get_request("/p2") + get_request("/p3"));
  for (const char* expected : {"ok /p1", "ok /p2", "ok /p3"}) {
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body, expected);
  }
}

// Pipelining is bounded by design: a connection's requests are handled one at a time, the next
// head is read only after the previous answer is written, and unread bytes wait in the kernel,
// not in crawlgate. A flood of 500 pipelined requests holds one upstream connection, in order.
TEST_F(ProxyTest, PipelinedFloodIsServedOneAtATimeOnOneUpstreamConnection) {
  start([] {
    auto settings = test_settings();
    settings.threads = 1;
    return settings;
  }());
  RawClient client(port());
  std::string flood;
  constexpr int kRequests = 500;
  for (int i = 0; i < kRequests; ++i) flood += get_request("/f" + std::to_string(i));
  client.send(flood);
  for (int i = 0; i < kRequests; ++i) {
    auto response = client.read_response();
    ASSERT_TRUE(response) << "answer " << i;
    ASSERT_EQ(response->body, "ok /f" + std::to_string(i));
  }
  EXPECT_EQ(backend_.requests(), kRequests);
  EXPECT_EQ(backend_.connections(), 1);
}

TEST_F(ProxyTest, HopByHopHeadersAreRemoved) {
  start();
  auto response = request(port(), get_request("/echo", "Connection: keep-alive, X-Private\r\n"
                                                       "X-Private: secret\r\nKeep-Alive: 5\r\n"
                                                       "TE: trailers\r\nProxy-Authorization: x\r\n"
                                                       "X-Public: yes\r\n"));
  ASSERT_TRUE(response);
  EXPECT_EQ(echoed_header(*response, "X-Private"), "<absent>");
  EXPECT_EQ(echoed_header(*response, "Keep-Alive"), "<absent>");
  EXPECT_EQ(echoed_header(*response, "TE"), "<absent>");
  EXPECT_EQ(echoed_header(*response, "Proxy-Authorization"), "<absent>");
  EXPECT_EQ(echoed_header(*response, "Connection"), "<absent>");
  EXPECT_EQ(echoed_header(*response, "X-Public"), "yes");
}

TEST_F(ProxyTest, NotModifiedAndNoContentHaveNoBody) {
  start();
  RawClient client(port());
  client.send(get_request("/status?code=304", "If-None-Match: \"v1\"\r\n"));
  auto not_modified = client.read_response();
  ASSERT_TRUE(not_modified);
  EXPECT_EQ(not_modified->status, 304);
  EXPECT_EQ(not_modified->header("ETag"), "\"v1\"");
  client.send(get_request("/status?code=204"));
  auto no_content = client.read_response();
  ASSERT_TRUE(no_content);
  EXPECT_EQ(no_content->status, 204);
  client.send(get_request("/still-alive"));
  auto next = client.read_response();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->body, "ok /still-alive");
}

TEST_F(ProxyTest, ExpectContinueIsAnsweredByTheProxy) {
  start();
  RawClient client(port());
  client.send("PUT /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  auto interim = client.read_response();
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100);
  client.send("hello");
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(echoed_header(*response, "Expect"), "<absent>");
  EXPECT_TRUE(response->body.ends_with("\n\nhello"));
}

TEST_F(ProxyTest, UpstreamThatAnswersBeforeReadingTheBodyIsRelayed) {
  start();
  RawClient client(port());
  std::string body(4 * 1024 * 1024, 'x');
  client.send("POST /early413 HTTP/1.1\r\nHost: a\r\nContent-Length: " +
              std::to_string(body.size()) + "\r\n\r\n");
  // Send what the socket takes; the proxy may stop reading once the upstream answered.
  beast::error_code ec;
  net::write(client.socket(), net::buffer(body), ec);
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 413);
  EXPECT_EQ(response->body, "too large");
}

struct FramingCase {
  const char* name;
  const char* raw;
  int status;
};

class ProxyFramingTest : public ProxyTest, public ::testing::WithParamInterface<FramingCase> {};

TEST_P(ProxyFramingTest, IsRefusedAndTheConnectionClosed) {
  start();
  RawClient client(port());
  client.send(GetParam().raw);
  auto response = client.read_response();
  ASSERT_TRUE(response) << GetParam().name;
  EXPECT_EQ(response->status, GetParam().status) << GetParam().name;
  EXPECT_EQ(response->header("Connection"), "close");
  EXPECT_NE(response->body.find("request id: "), std::string::npos);
  EXPECT_EQ(response->header("X-Request-Id").size(), 32u);
  EXPECT_TRUE(client.closed_by_peer()) << GetParam().name;
  // Nothing of it reached the backend.
  EXPECT_EQ(backend_.requests(), 0) << GetParam().name;
}

INSTANTIATE_TEST_SUITE_P(
    Smuggling, ProxyFramingTest,
    ::testing::Values(
        FramingCase{"te_gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400},
        FramingCase{"te_xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        FramingCase{"te_and_cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        FramingCase{"te_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        FramingCase{"obs_fold", "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n", 400},
        FramingCase{"cl_list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400},
        FramingCase{"cl_duplicate", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400},
        FramingCase{"cl_nondigit", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3a\r\n\r\nabc", 400},
        FramingCase{"missing_host", "GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", 400},
        FramingCase{"duplicate_host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        FramingCase{"malformed_line", "GET / HTTP/1.1\r\nHost: a\r\nNoColonHere\r\n\r\n", 400},
        FramingCase{"tls_hello", "\x16\x03\x01\x02\x01\x01\x01\x01\xfc\x03\x03", 400},
        FramingCase{"garbage_line", "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        FramingCase{"http2_version", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(ProxyTest, BadChunkSizeInBodyIs400) {
  start();
  RawClient client(port());
  client.send("POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n");
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 400);
  EXPECT_TRUE(client.closed_by_peer());
}

// A chunk-size line never ends (an endless chunk extension): Beast keeps such a line in the read
// buffer, which is capped, so the client gets a 400 and crawlgate holds no more than the cap,
// however much the client sends (before the cap: 200 MB sent grew RSS by 92 MB).
TEST_F(ProxyTest, EndlessChunkExtensionIs400NotMemory) {
  start();
  RawClient client(port());
  client.send("POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=");
  // 256 KiB of extension, well past the 72 KiB cap, then wait for the answer.
  const std::string slab(16 * 1024, 'a');
  boost::system::error_code ec;
  for (int i = 0; i < 16 && !ec; ++i) net::write(client.socket(), net::buffer(slab), ec);
  auto response = client.read_response();
  if (response) {
    EXPECT_EQ(response->status, 400);
  }  // else: the close reset the connection before the answer could be read; still refused
  EXPECT_TRUE(client.closed_by_peer());
  EXPECT_EQ(proxy_->server().stats().bad_requests.load(), 1u);
  // The backend never saw a complete request, and crawlgate still serves.
  auto next = request(port(), get_request("/after"));
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
}

TEST_F(ProxyTest, OversizedHeaderIs431) {
  auto settings = test_settings();
  settings.limits.max_header_bytes = 4096;
  start(settings);
  RawClient client(port());
  client.send(get_request("/", "X-Big: " + std::string(8000, 'a') + "\r\n"));
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 431);
  EXPECT_TRUE(client.closed_by_peer());
}

TEST_F(ProxyTest, OversizedBodyIs413) {
  auto settings = test_settings();
  settings.limits.max_body_bytes = 1000;
  start(settings);
  auto declared = request(port(), "POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n");
  ASSERT_TRUE(declared);
  EXPECT_EQ(declared->status, 413);
  std::string chunked = "POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) chunked += "200\r\n" + std::string(512, 'a') + "\r\n";
  chunked += "0\r\n\r\n";
  auto streamed = request(port(), chunked);
  ASSERT_TRUE(streamed);
  EXPECT_EQ(streamed->status, 413);
}

TEST_F(ProxyTest, SlowHeaderGets408) {
  auto settings = test_settings();
  settings.timeouts.header_read = std::chrono::milliseconds(300);
  start(settings);
  RawClient client(port());
  client.send("GET / HTTP/1.1\r\nHost: a\r\n");  // never finishes the head
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 408);
  EXPECT_TRUE(client.closed_by_peer());
}

TEST_F(ProxyTest, DeadBackendIs502) {
  // A port that was just free: nothing listens there.
  uint16_t dead_port;
  {
    net::io_context ioc;
    tcp::acceptor probe(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    dead_port = probe.local_endpoint().port();
  }
  RunningProxy proxy(dead_port, test_settings());
  auto response = request(proxy.port(), get_request("/"));
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 502);
  EXPECT_NE(response->body.find("request id: " + response->header("X-Request-Id")),
            std::string::npos);
  EXPECT_EQ(proxy.server().stats().upstream_connect_errors.load(), 1u);
}

TEST_F(ProxyTest, HangingBackendIs504) {
  auto settings = test_settings();
  settings.upstream.response_timeout = std::chrono::milliseconds(300);
  start(settings);
  auto response = request(port(), get_request("/hang"));
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 504);
  // The proxy keeps serving.
  auto next = request(port(), get_request("/fine"));
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
}

TEST_F(ProxyTest, GarbageFromTheBackendIs502AndTheProxyRecovers) {
  start();
  auto response = request(port(), get_request("/garbage"));
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 502);
  EXPECT_NE(response->body.find("request id: "), std::string::npos);
  auto next = request(port(), get_request("/fine-after-garbage"));
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
  EXPECT_GE(proxy_->server().stats().upstream_errors.load(), 1u);
}

// The same cap on the upstream side: a backend's endless chunk line ends the response (the
// head was already relayed, so the client connection is closed) instead of growing a buffer.
TEST_F(ProxyTest, BackendEndlessChunkLineEndsTheResponseNotMemory) {
  start();
  RawClient client(port());
  client.send(get_request("/endless-chunk-line"));
  auto response = client.read_response();
  // The 200 head may have gone out before the chunk line was seen: then the body is cut short.
  if (response) {
    EXPECT_TRUE(response->status == 502 || response->status == 200) << response->status;
  }
  EXPECT_TRUE(client.closed_by_peer());
  EXPECT_GE(proxy_->server().stats().upstream_resets.load(), 1u);
  // crawlgate gave up after its 128 KiB cap; the rest stopped in the kernel's socket buffers.
  EXPECT_LT(backend_.endless_bytes_sent(), 64u << 20);
  auto next = request(port(), get_request("/fine-after-endless-chunk"));
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
}

TEST_F(ProxyTest, BackendResetMidBodyClosesTheClientAndThePoolRecovers) {
  auto settings = test_settings();
  settings.threads = 1;
  start(settings);
  RawClient client(port());
  client.send(get_request("/reset-mid-body"));
  // The head went out before the reset: the only honest signal is a truncated, closed response.
  auto truncated = client.read_response();
  EXPECT_FALSE(truncated);
  EXPECT_TRUE(client.closed_by_peer() || !truncated);
  for (int i = 0; i < 3; ++i) {
    auto next = request(port(), get_request("/after-reset"));
    ASSERT_TRUE(next);
    EXPECT_EQ(next->status, 200);
  }
  EXPECT_EQ(proxy_->server().stats().upstream_resets.load(), 1u);
}

TEST_F(ProxyTest, UpstreamClosingPooledConnectionsIsRecoveredTransparently) {
  auto settings = test_settings();
  settings.threads = 1;
  start(settings);
  // /close makes the backend close after answering; the next request must not see an error.
  for (int i = 0; i < 5; ++i) {
    auto closing = request(port(), get_request("/close"));
    ASSERT_TRUE(closing);
    EXPECT_EQ(closing->status, 200);
    auto next = request(port(), get_request("/after"));
    ASSERT_TRUE(next);
    EXPECT_EQ(next->status, 200);
  }
}

TEST_F(ProxyTest, StalePooledConnectionIsRetriedForIdempotentRequests) {
  auto settings = test_settings();
  settings.threads = 1;
  start(settings);
  for (int i = 0; i < 3; ++i) {
    auto first = request(port(), get_request("/silent-close?ms=20"));
    ASSERT_TRUE(first);
    EXPECT_EQ(first->body, "silent");
    // Let the backend drop the pooled connection; the proxy only learns it on reuse.
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    auto second = request(port(), get_request("/after-stale"));
    ASSERT_TRUE(second);
    EXPECT_EQ(second->status, 200);
    EXPECT_EQ(second->body, "ok /after-stale");
  }
  EXPECT_EQ(proxy_->server().stats().upstream_errors.load(), 0u);
}

TEST_F(ProxyTest, ForwardedForIsBelievedOnlyFromTrustedPeers) {
  start();  // no trusted proxies
  auto untrusted = request(port(), get_request("/echo", "X-Forwarded-For: 203.0.113.9\r\n"
                                                        "X-Request-Id: forged-id\r\n"));
  ASSERT_TRUE(untrusted);
  EXPECT_EQ(echoed_header(*untrusted, "X-Forwarded-For"), "127.0.0.1");
  EXPECT_NE(echoed_header(*untrusted, "X-Request-Id"), "forged-id");
  proxy_.reset();

  auto settings = test_settings();
  settings.trusted_proxies = {*Cidr::parse("127.0.0.0/8"), *Cidr::parse("10.0.0.0/8")};
  std::string log_path = ::testing::TempDir() + "/xff_access.log";
  std::filesystem::remove(log_path);
  settings.access_log.path = log_path;
  start(settings);
  auto trusted = request(port(), get_request("/echo", "X-Forwarded-For: 198.51.100.7, 203.0.113.9, 10.1.2.3\r\n"
                                                      "X-Request-Id: upstream-lb-42\r\n"));
  ASSERT_TRUE(trusted);
  EXPECT_EQ(echoed_header(*trusted, "X-Forwarded-For"), "198.51.100.7, 203.0.113.9, 10.1.2.3, 127.0.0.1");
  EXPECT_EQ(echoed_header(*trusted, "X-Request-Id"), "upstream-lb-42");
  auto lines = wait_for_log_lines(proxy_->server(), log_path, 1);
  ASSERT_EQ(lines.size(), 1u);
  const std::string& line = lines[0];
  // The right-most untrusted address is the client.
  EXPECT_NE(line.find("\"ip\":\"203.0.113.9\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"peer\":\"127.0.0.1\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"request_id\":\"upstream-lb-42\""), std::string::npos) << line;
}

TEST_F(ProxyTest, AccessLogWritesOneJsonLinePerRequestWithRedaction) {
  auto settings = test_settings();
  std::string log_path = ::testing::TempDir() + "/access.jsonl";
  std::filesystem::remove(log_path);
  settings.access_log.path = log_path;
  start(settings);
  ASSERT_TRUE(request(port(), get_request("/logged?q=\"x\"", "Cookie: session=secret\r\n"
                                                              "Authorization: Bearer t0ken\r\n")));
  ASSERT_TRUE(request(port(), "BROKEN\r\n\r\n"));
  auto lines = wait_for_log_lines(proxy_->server(), log_path, 2);
  ASSERT_EQ(lines.size(), 2u);
  const std::string& first = lines[0];
  const std::string& second = lines[1];
  EXPECT_NE(first.find("\"target\":\"/logged?q=\\\"x\\\"\""), std::string::npos) << first;
  EXPECT_NE(first.find("[\"Cookie\",\"[redacted]\"]"), std::string::npos) << first;
  EXPECT_NE(first.find("[\"Authorization\",\"[redacted]\"]"), std::string::npos) << first;
  EXPECT_EQ(first.find("secret"), std::string::npos);
  EXPECT_EQ(first.find("t0ken"), std::string::npos);
  EXPECT_NE(first.find("\"status\":200"), std::string::npos);
  EXPECT_NE(second.find("\"status\":400"), std::string::npos) << second;
}

TEST_F(ProxyTest, AccessLogOnAFullDiskKeepsServingAndCountsDrops) {
  auto settings = test_settings();
  settings.access_log.path = "/dev/full";
  start(settings);
  for (int i = 0; i < 20; ++i) {
    auto response = request(port(), get_request("/full-disk"));
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200);
  }
  auto& log = proxy_->server().access_log();
  for (int attempt = 0; attempt < 500 && log.lines_dropped() < 20; ++attempt) {
    log.flush();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(proxy_->server().access_log().lines_written(), 0u);
  EXPECT_EQ(proxy_->server().access_log().lines_dropped(), 20u);
  EXPECT_GE(proxy_->server().access_log().write_errors(), 1u);
}

TEST_F(ProxyTest, StaticResponseStageAnswersWithoutTheBackend) {
  auto settings = test_settings();
  settings.static_responses.push_back({"/crawlgate-ping", 200, "text/plain", "pong\n"});
  start(settings);
  auto response = request(port(), get_request("/crawlgate-ping?cache=1"));
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "pong\n");
  EXPECT_EQ(backend_.requests(), 0);
  auto other = request(port(), get_request("/crawlgate-ping-not"));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->body, "ok /crawlgate-ping-not");
}

// A stage that finishes on another thread: the request resumes on its connection's strand.
class AsyncStage final : public proxy::Stage {
 public:
  std::string_view name() const override { return "async-test"; }
  proxy::StageVerdict evaluate(const RequestView& request, proxy::RequestContext& context,
                               const proxy::ResumeFn& resume) override {
    if (!request.path().starts_with("/suspend")) return proxy::StageVerdict::kContinue;
    bool deny = request.path() == "/suspend/deny";
    if (deny) context.response = proxy::error_response(403, context.request_id, "denied later");
    std::thread([resume, deny] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      resume(deny ? proxy::StageVerdict::kRespond : proxy::StageVerdict::kContinue);
    }).detach();
    return proxy::StageVerdict::kSuspend;
  }
};

TEST_F(ProxyTest, SuspendedStageResumesTheRequest) {
  start();
  auto snapshot = std::make_shared<proxy::Snapshot>(*proxy_->server().snapshot());
  snapshot->generation = 2;
  snapshot->pipeline.add(std::make_shared<AsyncStage>());
  proxy_->server().publish(snapshot);
  auto passed = request(port(), get_request("/suspend/ok"));
  ASSERT_TRUE(passed);
  EXPECT_EQ(passed->body, "ok /suspend/ok");
  auto denied = request(port(), get_request("/suspend/deny"));
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 403);
}

TEST_F(ProxyTest, WebSocketIsTunnelledAfter101) {
  start();
  net::io_context ioc;
  beast::websocket::stream<tcp::socket> ws(ioc);
  ws.next_layer().connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port()));
  ws.handshake("test.local", "/ws");
  for (std::string message : {"hello", "crawlgate tunnel"}) {
    ws.write(net::buffer(message));
    beast::flat_buffer buffer;
    ws.read(buffer);
    EXPECT_EQ(beast::buffers_to_string(buffer.data()), message);
  }
  ws.close(beast::websocket::close_code::normal);
  EXPECT_EQ(proxy_->server().stats().websocket_tunnels.load(), 1u);
}

TEST_F(ProxyTest, WebSocketCanBeRefused) {
  auto settings = test_settings();
  settings.websocket = WebSocketPolicy::kRefuse;
  start(settings);
  auto response = request(port(), get_request("/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                                                     "Sec-WebSocket-Version: 13\r\n"
                                                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 501);
}

TEST_F(ProxyTest, MaxConnectionsAnswers503) {
  auto settings = test_settings();
  settings.limits.max_connections = 2;
  settings.threads = 1;
  start(settings);
  RawClient first(port());
  RawClient second(port());
  // Make sure both are registered before the third arrives.
  first.send(get_request("/1"));
  ASSERT_TRUE(first.read_response());
  second.send(get_request("/2"));
  ASSERT_TRUE(second.read_response());
  RawClient third(port());
  auto response = third.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 503);
  EXPECT_EQ(proxy_->server().stats().connections_rejected.load(), 1u);
}

TEST_F(ProxyTest, PerAddressConnectionCapAnswers429AndExemptsTrustedProxies) {
  auto settings = test_settings();
  settings.limits.max_connections_per_address = 3;
  settings.threads = 1;
  start(settings);
  std::vector<std::unique_ptr<RawClient>> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(std::make_unique<RawClient>(port()));
    open.back()->send(get_request("/held"));
    ASSERT_TRUE(open.back()->read_response());
  }
  RawClient fourth(port());
  auto refused = fourth.read_response();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 429);
  EXPECT_EQ(refused->header("Retry-After"), "1");
  // A closed connection frees its slot.
  open.pop_back();
  std::optional<Response> again;
  for (int attempt = 0; attempt < 200; ++attempt) {
    again = request(port(), get_request("/again"));
    if (again && again->status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  proxy_.reset();

  settings.trusted_proxies = {*Cidr::parse("127.0.0.0/8")};
  start(settings);
  std::vector<std::unique_ptr<RawClient>> from_proxy;
  for (int i = 0; i < 6; ++i) {
    from_proxy.push_back(std::make_unique<RawClient>(port()));
    from_proxy.back()->send(get_request("/lb"));
    auto response = from_proxy.back()->read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200) << "connection " << i;
  }
}

TEST_F(ProxyTest, SlowRequestBodyIsCutOffWith408) {
  auto settings = test_settings();
  settings.timeouts.body_read = std::chrono::milliseconds(300);
  settings.limits.min_body_rate = 1000;
  start(settings);
  RawClient client(port());
  client.send("POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n");
  std::optional<Response> response;
  std::thread trickle([&] {
    // 10 bytes every 50 ms: 200 B/s, each read well inside the per-read timeout. Bounded.
    for (int i = 0; i < 40; ++i) {
      beast::error_code ec;
      net::write(client.socket(), net::buffer(std::string(10, 'x')), ec);
      if (ec) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  response = client.read_response();
  trickle.join();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 408);
  EXPECT_NE(response->body.find("too slowly"), std::string::npos);
}

TEST_F(ProxyTest, SlowlorisConnectionsDoNotStopNormalRequests) {
  auto settings = test_settings();
  settings.limits.max_connections_per_address = 0;  // all of this test comes from 127.0.0.1
  settings.timeouts.header_read = std::chrono::seconds(20);
  start(settings);
  std::vector<std::unique_ptr<RawClient>> slow;
  for (int i = 0; i < 300; ++i) {
    slow.push_back(std::make_unique<RawClient>(port()));
    slow.back()->send("GET /slow HTTP/1.1\r\nHost: a\r\n");
  }
  std::atomic<bool> stop{false};
  std::thread trickler([&] {
    // One more header byte per connection every 100 ms, never finishing (bounded: 10 s).
    for (int round = 0; round < 100 && !stop; ++round) {
      for (auto& client : slow) {
        beast::error_code ec;
        net::write(client->socket(), net::buffer("X", 1), ec);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  int served = 0;
  for (int i = 0; i < 100; ++i) {
    auto response = request(port(), get_request("/normal" + std::to_string(i)));
    if (response && response->status == 200) ++served;
  }
  stop = true;
  trickler.join();
  EXPECT_EQ(served, 100);
  EXPECT_EQ(backend_.requests(), 100);  // none of the slow heads reached the backend
}

TEST_F(ProxyTest, GracefulShutdownFinishesTheRequestInFlight) {
  start();
  auto in_flight = std::async(std::launch::async, [&] {
    return request(port(), get_request("/slow?ms=700"));
  });
  // Wait until the backend has the request, then ask crawlgate to stop.
  for (int i = 0; i < 200 && backend_.requests() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(backend_.requests(), 1);
  RawClient idle(port());  // an idle keep-alive connection must not hold shutdown up
  proxy_->shutdown_and_wait();
  auto response = in_flight.get();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "slow");
  EXPECT_EQ(response->header("Connection"), "close");
  EXPECT_TRUE(idle.closed_by_peer());
  // No longer accepting.
  net::io_context ioc;
  tcp::socket late(ioc);
  beast::error_code ec;
  late.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), proxy_->port()), ec);
  EXPECT_TRUE(ec);
}

TEST_F(ProxyTest, AdminListenerServesHealthAndReadiness) {
  start();
  auto health = request(proxy_->admin_port(), "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto ready = request(proxy_->admin_port(), "GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  auto reload = request(proxy_->admin_port(), "GET /-/reload HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(reload);
  EXPECT_EQ(reload->status, 405);
  proxy_->server().set_reload_handler([](bool& ok) {
    ok = false;
    return std::string("test.yaml:3:1: bad");
  });
  auto failed = request(proxy_->admin_port(), "POST /-/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->status, 422);
  EXPECT_NE(failed->body.find("test.yaml:3:1: bad"), std::string::npos);
}

}  // namespace
}  // namespace crawlgate::test
