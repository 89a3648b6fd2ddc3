#include <gtest/gtest.h>

#include "crawlgate/classifier/client_table.h"

namespace crawlgate {
namespace {

IpAddress ip(const char* text) {
  auto parsed = IpAddress::parse(text);
  EXPECT_TRUE(parsed.has_value()) << text;
  return parsed.value_or(IpAddress{});
}

TEST(ClientKeyTest, Ipv6Slash64Aggregation) {
  const ClientKey a = ClientKey::make(ip("2001:db8:1:2::1"), 32, 64, 7);
  const ClientKey b = ClientKey::make(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), 32, 64, 7);
  const ClientKey c = ClientKey::make(ip("2001:db8:1:3::1"), 32, 64, 7);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(a.prefix_len, 64);
  EXPECT_EQ(a.address, ip("2001:db8:1:2::").bytes());
  EXPECT_EQ(a.block().to_string(), "2001:db8:1:2::/64");
  // /128 keeps every address apart.
  EXPECT_NE(ClientKey::make(ip("2001:db8:1:2::1"), 32, 128, 7),
            ClientKey::make(ip("2001:db8:1:2::2"), 32, 128, 7));
}

TEST(ClientKeyTest, Ipv4Slash32DefaultAndSlash24Option) {
  EXPECT_NE(ClientKey::make(ip("192.0.2.1"), 32, 64, 1), ClientKey::make(ip("192.0.2.2"), 32, 64, 1));
  EXPECT_EQ(ClientKey::make(ip("192.0.2.1"), 32, 64, 1), ClientKey::make(ip("192.0.2.1"), 32, 64, 1));
  const ClientKey a = ClientKey::make(ip("192.0.2.1"), 24, 64, 1);
  const ClientKey b = ClientKey::make(ip("192.0.2.254"), 24, 64, 1);
  const ClientKey c = ClientKey::make(ip("192.0.3.1"), 24, 64, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(a.prefix_len, 96 + 24);
  EXPECT_EQ(a.address, ip("192.0.2.0").bytes());
  EXPECT_EQ(a.block().to_string(), "192.0.2.0/24");
  EXPECT_EQ(ClientKey::make(ip("192.0.2.9"), 32, 64, 1).block().to_string(), "192.0.2.9/32");
  // An IPv4-mapped IPv6 client is the IPv4 client.
  EXPECT_EQ(ClientKey::make(ip("::ffff:192.0.2.1"), 24, 64, 1), a);
}

TEST(ClientKeyTest, LimitIdSeparatesKeys) {
  EXPECT_NE(ClientKey::make(ip("192.0.2.1"), 32, 64, 1), ClientKey::make(ip("192.0.2.1"), 32, 64, 2));
  EXPECT_NE(ClientKey::make(ip("2001:db8::1"), 32, 64, 1), ClientKey::make(ip("2001:db8::1"), 32, 64, 2));
}

TEST(ClientKeyTest, PrefixZeroAndClamping) {
  // 0: the whole family shares one key, and the two families stay apart.
  const ClientKey v4 = ClientKey::make(ip("192.0.2.1"), 0, 0, 1);
  EXPECT_EQ(v4, ClientKey::make(ip("203.0.113.200"), 0, 0, 1));
  const ClientKey v6 = ClientKey::make(ip("2001:db8::1"), 0, 0, 1);
  EXPECT_EQ(v6, ClientKey::make(ip("fe80::1"), 0, 0, 1));
  EXPECT_NE(v4, v6);
  EXPECT_EQ(v4.block().to_string(), "0.0.0.0/0");
  EXPECT_EQ(v6.block().to_string(), "::/0");
  // Out-of-range prefixes clamp to the family's width.
  EXPECT_EQ(ClientKey::make(ip("192.0.2.1"), 99, 64, 1), ClientKey::make(ip("192.0.2.1"), 32, 64, 1));
  EXPECT_EQ(ClientKey::make(ip("2001:db8::1"), 32, 200, 1),
            ClientKey::make(ip("2001:db8::1"), 32, 128, 1));
  // The same bits with a different prefix length are different keys.
  EXPECT_NE(ClientKey::make(ip("2001:db8::"), 32, 48, 1), ClientKey::make(ip("2001:db8::"), 32, 64, 1));
}

}  // namespace
}  // namespace crawlgate
