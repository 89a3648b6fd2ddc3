#include "crawlgate/proxy/request_head.h"

#include <gtest/gtest.h>

namespace crawlgate::proxy {
namespace {

std::optional<HeadError> parse(std::string_view head, RequestHead& out) {
  EXPECT_EQ(find_head_end(head), head.size()) << head;
  return parse_request_head(head, out);
}

TEST(RequestHead, ParsesAGetWithHeadersInOrder) {
  RequestHead head;
  auto error = parse("GET /wiki/Main_Page?x=1 HTTP/1.1\r\nHost: example.org\r\nUser-Agent: a b\r\n"
                     "Accept:  text/html \r\n\r\n",
                     head);
  ASSERT_FALSE(error) << error->reason;
  EXPECT_EQ(head.method, "GET");
  EXPECT_EQ(head.target, "/wiki/Main_Page?x=1");
  EXPECT_EQ(head.version, 11);
  ASSERT_EQ(head.headers.size(), 3u);
  EXPECT_EQ(head.headers[1].name, "User-Agent");
  EXPECT_EQ(head.headers[2].value, "text/html");
  EXPECT_EQ(head.host, "example.org");
  EXPECT_TRUE(head.keep_alive());
  EXPECT_FALSE(head.has_body());
}

TEST(RequestHead, FindsTheEndOnlyWhenComplete) {
  EXPECT_EQ(find_head_end("GET / HTTP/1.1\r\nHost: a\r\n"), 0u);
  EXPECT_EQ(find_head_end("GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY"), 27u);
  // Bare LF heads end too, so they can be rejected rather than waited on.
  EXPECT_EQ(find_head_end("GET / HTTP/1.1\nHost: a\n\n"), 24u);
}

struct RejectCase {
  const char* name;
  const char* head;
  int status;
};

class RequestHeadRejects : public ::testing::TestWithParam<RejectCase> {};

TEST_P(RequestHeadRejects, WithItsStatus) {
  RequestHead head;
  std::string_view text = GetParam().head;
  std::size_t end = find_head_end(text);
  ASSERT_GT(end, 0u) << GetParam().name;
  auto error = parse_request_head(text.substr(0, end), head);
  ASSERT_TRUE(error) << GetParam().name;
  EXPECT_EQ(error->status, GetParam().status) << GetParam().name << ": " << error->reason;
}

INSTANTIATE_TEST_SUITE_P(
    Framing, RequestHeadRejects,
    ::testing::Values(
        RejectCase{"te_not_chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
        RejectCase{"te_list", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
        RejectCase{"te_gzip_chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        RejectCase{"te_xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400},
        RejectCase{"te_twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        RejectCase{"te_and_cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        RejectCase{"te_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        RejectCase{"obs_fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  c\r\n\r\n", 400},
        RejectCase{"cl_list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", 400},
        RejectCase{"cl_twice", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 400},
        RejectCase{"cl_sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", 400},
        RejectCase{"cl_hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\n", 400},
        RejectCase{"cl_overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400},
        RejectCase{"no_host", "GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", 400},
        RejectCase{"two_hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        RejectCase{"space_before_colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
        RejectCase{"bare_lf", "GET / HTTP/1.1\nHost: a\n\n", 400},
        RejectCase{"bare_cr", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400},
        RejectCase{"http09", "GET /\r\n\r\n", 400},
        RejectCase{"http2", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
        RejectCase{"http12", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505},
        RejectCase{"lowercase_version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
        RejectCase{"asterisk_get", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        RejectCase{"authority_form", "GET example.org:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        RejectCase{"connect", "CONNECT example.org:443 HTTP/1.1\r\nHost: a\r\n\r\n", 501},
        RejectCase{"expect_other", "GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", 417},
        RejectCase{"bad_method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        RejectCase{"two_user_agents", "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: Mozilla/5.0\r\nUser-Agent: GPTBot/1.2\r\n\r\n", 400},
        RejectCase{"connection_not_a_token_list", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: closxp X-Secret\r\n\r\n", 400},
        RejectCase{"proxy_connection_not_a_token_list", "GET / HTTP/1.1\r\nHost: a\r\nProxy-Connection: keep alive\r\n\r\n", 400},
        RejectCase{"bad_host", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(RequestHead, NulIsRejected) {
  // string literals stop at NUL in the table above; build this one explicitly.
  std::string text("GET / HTTP/1.1\r\nHost: a\r\nX: a");
  text.push_back('\0');
  text.append("b\r\n\r\n");
  RequestHead head;
  auto error = parse_request_head(text, head);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->status, 400);
}

TEST(RequestHead, AbsoluteFormAuthorityReplacesHost) {
  RequestHead head;
  auto error = parse("GET http://wiki.example/w/index.php?a=1 HTTP/1.1\r\nHost: other\r\n\r\n", head);
  ASSERT_FALSE(error) << error->reason;
  EXPECT_EQ(head.host, "wiki.example");
  EXPECT_EQ(head.origin_target, "/w/index.php?a=1");
}

TEST(RequestHead, AsteriskFormOnlyForOptions) {
  RequestHead head;
  EXPECT_FALSE(parse("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", head));
}

TEST(RequestHead, Http10WithoutHostIsFine) {
  RequestHead head;
  auto error = parse("GET / HTTP/1.0\r\n\r\n", head);
  ASSERT_FALSE(error) << error->reason;
  EXPECT_EQ(head.version, 10);
  EXPECT_FALSE(head.keep_alive());
}

TEST(RequestHead, ChunkedAndLengthAndConnectionTokens) {
  RequestHead head;
  ASSERT_FALSE(parse("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n"
                     "Connection: close, X-Secret\r\nExpect: 100-continue\r\n\r\n",
                     head));
  EXPECT_TRUE(head.chunked);
  EXPECT_TRUE(head.has_body());
  EXPECT_TRUE(head.expect_continue);
  EXPECT_FALSE(head.keep_alive());
  ASSERT_EQ(head.connection_tokens.size(), 2u);
  EXPECT_EQ(head.connection_tokens[1], "X-Secret");

  ASSERT_FALSE(parse("PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0012\r\n\r\n", head));
  ASSERT_TRUE(head.content_length);
  EXPECT_EQ(*head.content_length, 12u);
}

TEST(RequestHead, TooManyFieldsIs431) {
  std::string text = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 200; ++i) text += "X-" + std::to_string(i) + ": v\r\n";
  text += "\r\n";
  RequestHead head;
  auto error = parse_request_head(text, head, 100);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->status, 431);
}

}  // namespace
}  // namespace crawlgate::proxy
