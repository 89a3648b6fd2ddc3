// The per-client state table: a fixed-capacity, sharded hash table with CLOCK eviction.
//
// Layout (per shard, allocated once at construction, never grown):
//   slab   max_entries/shards ClientEntry slots, constructed lazily as the shard fills;
//   index  an open-addressing (linear probing, backward-shift deletion, no tombstones) array of
//          8-byte {slot + 1, 32-bit hash} pairs, 1.5 per slab slot (load factor <= 2/3);
//   refs   one CLOCK reference bit per slab slot.
// A lookup that hits sets the slot's reference bit; a new entry starts with it clear, so a flood
// of one-off addresses evicts itself before it evicts clients that keep coming back.
// Large tables cost address space up front but resident memory only as entries are used (the
// slab is constructed lazily and the index and bits come zeroed from calloc).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "crawlgate/classifier/clock.h"
#include "crawlgate/classifier/gcra.h"
#include "crawlgate/rules/ip_address.h"

namespace crawlgate {

// The client key: the address masked to its class's prefix, plus the id of the limit it counts
// against. `prefix_len` is in the 128-bit (IPv4-mapped) space, like Cidr::prefix_len_128(): an
// IPv4 /24 key has prefix_len 120.
struct ClientKey {
  std::array<uint8_t, 16> address{};
  uint16_t limit_id = 0;
  uint8_t prefix_len = 128;

  bool operator==(const ClientKey&) const = default;
  // ipv4_prefix is clamped to 0-32, ipv6_prefix to 0-128 (0: the whole family shares one key).
  static ClientKey make(const IpAddress& client, unsigned ipv4_prefix, unsigned ipv6_prefix,
                        uint16_t limit_id);
  // The key's block in the family's own bits ("192.0.2.0/24", "2001:db8::/64"), for the admin API.
  Cidr block() const;
};

struct ClientEntry {
  ClientKey key;
  GcraState limit;
  Nanos last_seen = 0;  // `now` of the latest with_entry; 0 inside f for a new entry
  // The classifier issue will add feature state here, within 1 KiB per entry.
};

class ClientTable {
 public:
  // max_entries is a hard cap (capacity() == max_entries exactly; shards are reduced to
  // max_entries when there are more of them). Throws std::invalid_argument for max_entries == 0.
  explicit ClientTable(std::size_t max_entries, std::size_t shards = 64);
  ~ClientTable();
  ClientTable(const ClientTable&) = delete;
  ClientTable& operator=(const ClientTable&) = delete;

  // Calls f(ClientEntry&, bool created) under the entry's shard lock and returns f's result.
  // Creates the entry (key set, everything else zero) when absent, evicting by CLOCK within the
  // shard when the shard is full. After f returns (or throws), entry.last_seen = now, so f sees
  // the previous visit's time. f must not call back into this table.
  template <typename F>
  auto with_entry(const ClientKey& key, Nanos now, F&& f)
      -> decltype(f(std::declval<ClientEntry&>(), true)) {
    std::unique_lock<std::mutex> lock;
    auto [entry, created] = acquire(key, lock);
    struct Touch {
      ClientEntry& entry;
      Nanos now;
      ~Touch() { entry.last_seen = now; }
    } touch{*entry, now};
    return std::forward<F>(f)(*entry, created);
  }

  std::optional<ClientEntry> find(const ClientKey& key) const;  // a copy; does not count as a use
  std::size_t size() const;                                      // entries in use
  std::size_t capacity() const { return capacity_; }
  std::size_t shard_count() const { return shard_count_; }
  std::uint64_t evictions() const;

  // Per tracked client, including index overhead: the entry, 1.5 index slots of 8 bytes, and the
  // reference bit (rounded up to a byte). Per-shard headers are extra (memory_bytes() counts them).
  static constexpr std::size_t bytes_per_entry() {
    return sizeof(ClientEntry) + kIndexSlotBytes * kIndexNum / kIndexDen + 1;
  }
  std::size_t memory_bytes() const { return memory_bytes_; }  // what the table allocated

  static constexpr std::size_t kIndexSlotBytes = 8;
  static constexpr std::size_t kIndexNum = 3, kIndexDen = 2;  // index slots per entry

 private:
  struct Shard;
  struct Acquired {
    ClientEntry* entry;
    bool created;
  };
  // Locks the key's shard into `lock` and finds or creates the entry.
  Acquired acquire(const ClientKey& key, std::unique_lock<std::mutex>& lock);
  std::uint64_t hash(const ClientKey& key) const;
  Shard& shard_for(std::uint64_t hash) const;

  std::size_t capacity_ = 0;
  std::size_t shard_count_ = 0;
  std::size_t memory_bytes_ = 0;
  std::uint64_t seed_ = 0;
  Shard* shards_ = nullptr;
};

}  // namespace crawlgate
