#include "crawlgate/rules/ip_address.h"

#include <arpa/inet.h>

#include <cstring>

namespace crawlgate {
namespace {

constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

IpAddress IpAddress::v4(uint32_t host_order) {
  IpAddress address;
  std::memcpy(address.bytes_.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size());
  address.bytes_[12] = static_cast<uint8_t>(host_order >> 24);
  address.bytes_[13] = static_cast<uint8_t>(host_order >> 16);
  address.bytes_[14] = static_cast<uint8_t>(host_order >> 8);
  address.bytes_[15] = static_cast<uint8_t>(host_order);
  return address;
}

IpAddress IpAddress::v6(const std::array<uint8_t, 16>& bytes) {
  IpAddress address;
  address.bytes_ = bytes;
  return address;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  // inet_pton needs a NUL-terminated string; the longest textual IPv6 address is 45 characters.
  if (text.empty() || text.size() > 45) return std::nullopt;
  char buffer[46];
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  if (text.find(':') == std::string_view::npos) {
    in_addr v4_address{};
    if (inet_pton(AF_INET, buffer, &v4_address) != 1) return std::nullopt;
    return IpAddress::v4(ntohl(v4_address.s_addr));
  }
  std::array<uint8_t, 16> bytes{};
  if (inet_pton(AF_INET6, buffer, bytes.data()) != 1) return std::nullopt;
  return IpAddress::v6(bytes);
}

bool IpAddress::is_v4() const {
  return std::memcmp(bytes_.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size()) == 0;
}

IpAddress IpAddress::masked(unsigned prefix_len) const {
  unsigned keep = is_v4() ? prefix_len + 96 : prefix_len;
  if (keep > 128) keep = 128;
  IpAddress result = *this;
  for (unsigned byte = 0; byte < 16; ++byte) {
    unsigned first_bit = byte * 8;
    if (first_bit >= keep) {
      result.bytes_[byte] = 0;
    } else if (first_bit + 8 > keep) {
      result.bytes_[byte] &= static_cast<uint8_t>(0xff << (8 - (keep - first_bit)));
    }
  }
  return result;
}

std::string IpAddress::to_string() const {
  char buffer[INET6_ADDRSTRLEN];
  if (is_v4()) {
    inet_ntop(AF_INET, bytes_.data() + 12, buffer, sizeof buffer);
  } else {
    inet_ntop(AF_INET6, bytes_.data(), buffer, sizeof buffer);
  }
  return buffer;
}

std::optional<Cidr> Cidr::parse(std::string_view text, std::string* error) {
  auto fail = [&](std::string message) -> std::optional<Cidr> {
    if (error) *error = std::move(message);
    return std::nullopt;
  };
  std::string_view address_text = text;
  std::optional<unsigned> prefix;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    address_text = text.substr(0, slash);
    std::string_view prefix_text = text.substr(slash + 1);
    if (prefix_text.empty() || prefix_text.size() > 3) {
      return fail("bad prefix length in '" + std::string(text) + "'");
    }
    unsigned value = 0;
    for (char c : prefix_text) {
      if (c < '0' || c > '9') return fail("bad prefix length in '" + std::string(text) + "'");
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    prefix = value;
  }
  auto address = IpAddress::parse(address_text);
  if (!address) return fail("'" + std::string(address_text) + "' is not an IP address");
  unsigned max_len = address->is_v4() ? 32 : 128;
  unsigned len = prefix.value_or(max_len);
  if (len > max_len) {
    return fail("prefix /" + std::to_string(len) + " is longer than " + std::to_string(max_len) +
                " bits in '" + std::string(text) + "'");
  }
  if (address->masked(len) != *address) {
    return fail("'" + std::string(text) + "' has host bits set (did you mean " +
                address->masked(len).to_string() + "/" + std::to_string(len) + "?)");
  }
  return Cidr{*address, len};
}

bool Cidr::contains(const IpAddress& address) const {
  if (address.is_v4() != network.is_v4()) return false;
  return address.masked(prefix_len) == network;
}

std::string Cidr::to_string() const {
  return network.to_string() + "/" + std::to_string(prefix_len);
}

}  // namespace crawlgate
