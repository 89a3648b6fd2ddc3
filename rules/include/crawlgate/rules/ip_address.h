// IP addresses and CIDR blocks without Boost, so rules/ and classifier/ stay I/O-free.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace crawlgate {

// An IPv4 or IPv6 address. IPv4 is stored as an IPv4-mapped IPv6 address (::ffff:a.b.c.d) so a
// single 128-bit prefix tree serves both families.
class IpAddress {
 public:
  IpAddress() = default;
  static IpAddress v4(uint32_t host_order);
  static IpAddress v6(const std::array<uint8_t, 16>& bytes);
  // Accepts dotted IPv4, RFC 4291 IPv6 (with :: and embedded IPv4), and IPv6 in brackets.
  static std::optional<IpAddress> parse(std::string_view text);

  bool is_v4() const;
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }
  // Bit i counting from the most significant bit of the 128-bit form.
  bool bit(unsigned i) const { return (bytes_[i / 8] >> (7 - i % 8)) & 1; }
  // The address with all bits after `prefix_len` (in the family's own bit count) cleared.
  IpAddress masked(unsigned prefix_len) const;
  std::string to_string() const;

  friend bool operator==(const IpAddress&, const IpAddress&) = default;
  friend auto operator<=>(const IpAddress&, const IpAddress&) = default;

 private:
  std::array<uint8_t, 16> bytes_{};
};

// A CIDR block. `prefix_len` is in the family's own bits (0-32 for IPv4, 0-128 for IPv6).
struct Cidr {
  IpAddress network;
  unsigned prefix_len = 0;

  // "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or /128). Host bits must be zero so a
  // typo such as 10.0.0.1/8 is reported instead of silently widened.
  static std::optional<Cidr> parse(std::string_view text, std::string* error = nullptr);
  bool contains(const IpAddress& address) const;
  std::string to_string() const;
  // Prefix length in the 128-bit (IPv4-mapped) space.
  unsigned prefix_len_128() const { return network.is_v4() ? prefix_len + 96 : prefix_len; }
};

}  // namespace crawlgate
