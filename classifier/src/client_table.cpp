#include "hashing.h"
#include "crawlgate/classifier/client_table.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <random>
#include <stdexcept>

namespace crawlgate {

using hashing::mum;
using hashing::reduce32;

ClientKey ClientKey::make(const IpAddress& client, unsigned ipv4_prefix, unsigned ipv6_prefix,
                          uint16_t limit_id) {
  ClientKey key;
  const bool v4 = client.is_v4();
  const unsigned prefix = v4 ? std::min(ipv4_prefix, 32u) : std::min(ipv6_prefix, 128u);
  key.address = client.masked(prefix).bytes();
  key.prefix_len = static_cast<uint8_t>(v4 ? prefix + 96 : prefix);
  key.limit_id = limit_id;
  return key;
}

Cidr ClientKey::block() const {
  const IpAddress network = IpAddress::v6(address);
  unsigned len = prefix_len;
  if (network.is_v4()) len = len >= 96 ? len - 96 : 0;
  return Cidr{network, len};
}

namespace {

struct IndexSlot {
  uint32_t slot1;  // slab slot + 1; 0 = empty
  uint32_t hash;   // low 32 bits of the key's hash; the home position derives from it
};
static_assert(sizeof(IndexSlot) == ClientTable::kIndexSlotBytes);



}  // namespace

struct alignas(64) ClientTable::Shard {
  std::mutex mutex;
  ClientEntry* slab = nullptr;
  IndexSlot* index = nullptr;
  uint64_t* refs = nullptr;
  uint32_t cap = 0;         // slab slots
  uint32_t index_size = 0;  // index slots
  uint32_t hand = 0;        // CLOCK hand over slab slots
  std::atomic<uint32_t> used{0};       // slab slots constructed (never shrinks); written under lock
  std::atomic<uint64_t> evictions{0};  // written under lock

  ~Shard() {
    const uint32_t n = used.load(std::memory_order_relaxed);
    for (uint32_t i = 0; i < n; ++i) slab[i].~ClientEntry();
    ::operator delete(slab, std::align_val_t{alignof(ClientEntry)});
    std::free(index);
    std::free(refs);
  }

  uint32_t home(uint32_t h) const { return reduce32(h, index_size); }
  uint32_t next(uint32_t p) const { return p + 1 == index_size ? 0 : p + 1; }

  // Position of the key in the index, or of the empty slot that ends its probe sequence.
  std::pair<uint32_t, bool> find(const ClientKey& key, uint32_t h) const {
    for (uint32_t p = home(h);; p = next(p)) {
      const IndexSlot s = index[p];
      if (s.slot1 == 0) return {p, false};
      if (s.hash == h && slab[s.slot1 - 1].key == key) return {p, true};
    }
  }

  // Backward-shift deletion: pulls later members of the cluster into the hole when that does not
  // move them before their home position, so probing never needs tombstones.
  void erase_at(uint32_t hole) {
    for (uint32_t q = next(hole);; q = next(q)) {
      const IndexSlot s = index[q];
      if (s.slot1 == 0) break;
      const uint32_t h = home(s.hash);
      const uint32_t dist_home = q >= h ? q - h : q + index_size - h;
      const uint32_t dist_hole = q >= hole ? q - hole : q + index_size - hole;
      if (dist_home >= dist_hole) {
        index[hole] = s;
        hole = q;
      }
    }
    index[hole] = IndexSlot{0, 0};
  }

  bool referenced(uint32_t slot) const { return (refs[slot >> 6] >> (slot & 63)) & 1; }
  void reference(uint32_t slot) {
    uint64_t& word = refs[slot >> 6];
    const uint64_t bit = uint64_t{1} << (slot & 63);
    if (!(word & bit)) word |= bit;
  }

  // CLOCK: from the hand, clear set reference bits until a clear one is found; that is the victim.
  uint32_t clock_victim() {
    const uint32_t words = (cap + 63) / 64;
    for (;;) {
      const uint32_t w = hand >> 6;
      const uint32_t b = hand & 63;
      uint64_t valid = ~uint64_t{0};
      if (w + 1 == words && (cap & 63) != 0) valid = (uint64_t{1} << (cap & 63)) - 1;
      const uint64_t window = (~uint64_t{0} << b) & valid;
      const uint64_t clear = ~refs[w] & window;
      if (clear != 0) {
        const unsigned z = static_cast<unsigned>(__builtin_ctzll(clear));
        refs[w] &= ~(window & ((uint64_t{1} << z) - 1));  // bits b..z-1 were all set
        const uint32_t victim = w * 64 + z;
        hand = victim + 1 == cap ? 0 : victim + 1;
        return victim;
      }
      refs[w] &= ~window;
      hand = w + 1 == words ? 0 : (w + 1) * 64;
    }
  }
};

ClientTable::ClientTable(std::size_t max_entries, std::size_t shards) {
  if (max_entries == 0) throw std::invalid_argument("ClientTable: max_entries must be at least 1");
  if (shards == 0) shards = 1;
  shards = std::min(shards, max_entries);
  const std::size_t base = max_entries / shards;
  const std::size_t extra = max_entries % shards;
  // Index slots per shard must fit in 32 bits.
  if ((base + 1) * kIndexNum / kIndexDen + 2 >= std::numeric_limits<uint32_t>::max()) {
    throw std::invalid_argument("ClientTable: too many entries per shard");
  }
  capacity_ = max_entries;
  shard_count_ = shards;
  seed_ = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}() ^
          0x9e3779b97f4a7c15ULL;

  shards_ = new Shard[shards];
  memory_bytes_ = sizeof(Shard) * shards;
  try {
    for (std::size_t i = 0; i < shards; ++i) {
      Shard& s = shards_[i];
      s.cap = static_cast<uint32_t>(base + (i < extra ? 1 : 0));
      s.index_size = static_cast<uint32_t>((s.cap * kIndexNum + kIndexDen - 1) / kIndexDen + 1);
      const std::size_t words = (s.cap + 63) / 64;
      // Raw storage: slab slots are constructed as the shard fills; calloc'd zero pages cost no
      // resident memory until written.
      s.slab = static_cast<ClientEntry*>(::operator new(sizeof(ClientEntry) * s.cap,
                                                        std::align_val_t{alignof(ClientEntry)}));
      s.index = static_cast<IndexSlot*>(std::calloc(s.index_size, sizeof(IndexSlot)));
      s.refs = static_cast<uint64_t*>(std::calloc(words, sizeof(uint64_t)));
      if (s.index == nullptr || s.refs == nullptr) throw std::bad_alloc();
      memory_bytes_ += sizeof(ClientEntry) * s.cap + sizeof(IndexSlot) * s.index_size +
                       sizeof(uint64_t) * words;
    }
  } catch (...) {
    delete[] shards_;
    throw;
  }
}

ClientTable::~ClientTable() { delete[] shards_; }

uint64_t ClientTable::hash(const ClientKey& key) const { return hashing::client_key(key, seed_); }

ClientTable::Shard& ClientTable::shard_for(uint64_t h) const {
  // The high half picks the shard, the low half the position inside it.
  return shards_[reduce32(static_cast<uint32_t>(h >> 32), static_cast<uint32_t>(shard_count_))];
}

ClientTable::Acquired ClientTable::acquire(const ClientKey& key, std::unique_lock<std::mutex>& lock) {
  const uint64_t h = hash(key);
  const uint32_t h32 = static_cast<uint32_t>(h);
  Shard& s = shard_for(h);
  lock = std::unique_lock<std::mutex>(s.mutex);

  auto [pos, found] = s.find(key, h32);
  if (found) {
    const uint32_t slot = s.index[pos].slot1 - 1;
    s.reference(slot);
    return {&s.slab[slot], false};
  }

  uint32_t slot;
  const uint32_t used = s.used.load(std::memory_order_relaxed);
  if (used < s.cap) {
    slot = used;
    new (&s.slab[slot]) ClientEntry{};
    s.used.store(used + 1, std::memory_order_relaxed);
  } else {
    slot = s.clock_victim();
    ClientEntry& victim = s.slab[slot];
    const uint32_t vh = static_cast<uint32_t>(hash(victim.key));
    uint32_t p = s.home(vh);
    while (s.index[p].slot1 != slot + 1) p = s.next(p);
    s.erase_at(p);
    victim = ClientEntry{};
    s.evictions.store(s.evictions.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    pos = s.find(key, h32).first;  // the deletion may have moved the probe's end
  }
  s.index[pos] = IndexSlot{slot + 1, h32};
  ClientEntry& entry = s.slab[slot];
  entry.key = key;
  return {&entry, true};
}

std::optional<ClientEntry> ClientTable::find(const ClientKey& key) const {
  const uint64_t h = hash(key);
  Shard& s = shard_for(h);
  std::lock_guard<std::mutex> lock(s.mutex);
  const auto [pos, found] = s.find(key, static_cast<uint32_t>(h));
  if (!found) return std::nullopt;
  return s.slab[s.index[pos].slot1 - 1];
}

std::size_t ClientTable::size() const {
  std::size_t total = 0;
  for (std::size_t i = 0; i < shard_count_; ++i) {
    total += shards_[i].used.load(std::memory_order_relaxed);
  }
  return total;
}

std::uint64_t ClientTable::evictions() const {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < shard_count_; ++i) {
    total += shards_[i].evictions.load(std::memory_order_relaxed);
  }
  return total;
}

}  // namespace crawlgate
