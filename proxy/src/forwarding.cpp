#include "crawlgate/proxy/forwarding.h"

#include <cstdint>
#include <random>
#include <vector>

namespace crawlgate::proxy {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// splitmix64: a fast, well-mixed generator; seeded per thread from the OS.
struct RequestIdGenerator {
  std::uint64_t state;
  RequestIdGenerator() {
    std::random_device device;
    state = (static_cast<std::uint64_t>(device()) << 32) ^ device();
  }
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

}  // namespace

bool is_trusted(const IpAddress& address, std::span<const Cidr> trusted) {
  for (const Cidr& block : trusted) {
    if (block.contains(address)) return true;
  }
  return false;
}

IpAddress resolve_client_ip(const IpAddress& peer, std::span<const HeaderField> headers,
                            std::span<const Cidr> trusted) {
  if (trusted.empty() || !is_trusted(peer, trusted)) return peer;
  std::vector<std::string_view> elements;
  for (const HeaderField& field : headers) {
    if (!iequals(field.name, "x-forwarded-for")) continue;
    std::string_view list = field.value;
    while (true) {
      std::size_t comma = list.find(',');
      elements.push_back(trim(list.substr(0, comma)));
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  IpAddress candidate = peer;
  for (auto it = elements.rbegin(); it != elements.rend(); ++it) {
    auto address = IpAddress::parse(*it);
    if (!address) return candidate;
    candidate = *address;
    if (!is_trusted(candidate, trusted)) return candidate;
  }
  return candidate;
}

std::string generate_request_id() {
  thread_local RequestIdGenerator generator;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (int half = 0; half < 2; ++half) {
    std::uint64_t bits = generator.next();
    for (int i = 0; i < 16; ++i) {
      id[half * 16 + i] = kHex[bits & 0xf];
      bits >>= 4;
    }
  }
  return id;
}

bool is_acceptable_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_' || c == '.' || c == ':' || c == '/' || c == '+' || c == '=';
    if (!ok) return false;
  }
  return true;
}

}  // namespace crawlgate::proxy
