// Hashing shared by the client and behaviour tables: one seeded key hash, so both tables spread
// the same keys the same way and an attacker cannot aim at one shard without knowing the seed.
#pragma once

#include <cstdint>
#include <cstring>

#include "crawlgate/classifier/client_table.h"

namespace crawlgate::hashing {

// 64x64 -> 128-bit multiply, folded (wyhash's mixer).
inline std::uint64_t mum(std::uint64_t a, std::uint64_t b) {
  const unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

// Maps a 32-bit value uniformly onto [0, n) (Lemire's multiply-shift).
inline std::uint32_t reduce32(std::uint32_t x, std::uint32_t n) {
  return static_cast<std::uint32_t>((static_cast<std::uint64_t>(x) * n) >> 32);
}

inline std::uint64_t client_key(const ClientKey& key, std::uint64_t seed) {
  std::uint64_t a, b;
  std::memcpy(&a, key.address.data(), 8);
  std::memcpy(&b, key.address.data() + 8, 8);
  const std::uint64_t c = key.limit_id | (std::uint64_t{key.prefix_len} << 16);
  const std::uint64_t h = mum(a ^ seed ^ 0xa0761d6478bd642fULL, b ^ 0xe7037ed1a0b428dbULL);
  return mum(h ^ c ^ 0x8ebc6af09c88c6e3ULL, seed ^ 0x589965cc75374cc3ULL);
}

}  // namespace crawlgate::hashing
