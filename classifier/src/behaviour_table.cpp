// BehaviourTable: two bounded, striped, 8-way set-associative tables of BehaviourState (clients and
// address blocks).
//
// A key hashes to one set of 8 ways; a lookup compares at most 8 keys, a miss takes a free way or
// evicts within the set. The victim is the way least worth keeping: entries seen only once go
// first (a flood of one-off addresses evicts itself, not returning clients), then the one idle
// longest. Storage is one calloc'd array allocated at construction, so resident memory grows only
// as entries are written and never beyond capacity * sizeof(BehaviourState).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <stdexcept>

#include "hashing.h"
#include "crawlgate/classifier/features.h"
#include "features_internal.h"

namespace crawlgate {

using hashing::mum;
using hashing::reduce32;

namespace {



// The full address, hashed with a fixed seed (block entries count distinct addresses by bit).
uint64_t address_hash(const IpAddress& a) {
  const auto& b = a.bytes();
  return hash_bytes(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
}

constexpr std::size_t kWays = 8;

}  // namespace

class BehaviourTable::Store {
 public:
  Store(std::size_t capacity, std::size_t stripes) {
    if (capacity == 0) throw std::invalid_argument("BehaviourTable: capacity must be at least 1");
    sets_ = (capacity + kWays - 1) / kWays;
    if (sets_ > 0xffffffffu) throw std::invalid_argument("BehaviourTable: capacity too large");
    stripe_count_ = std::clamp<std::size_t>(stripes, 1, sets_);
    entries_ = static_cast<BehaviourState*>(std::calloc(sets_ * kWays, sizeof(BehaviourState)));
    if (entries_ == nullptr) throw std::bad_alloc();
    stripes_ = std::make_unique<Stripe[]>(stripe_count_);
    seed_ = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  }
  ~Store() { std::free(entries_); }

  std::size_t capacity() const { return sets_ * kWays; }
  std::size_t size() const { return used_.load(std::memory_order_relaxed); }
  uint64_t evictions() const { return evictions_.load(std::memory_order_relaxed); }
  std::size_t memory_bytes() const {
    return sizeof(*this) + sets_ * kWays * sizeof(BehaviourState) + stripe_count_ * sizeof(Stripe);
  }

  // Calls f(BehaviourState*) under the set's stripe lock. With create, a missing key gets a fresh
  // (zeroed) entry; without, f sees nullptr.
  template <typename F>
  auto with(const ClientKey& key, bool create, F&& f) {
    const uint64_t h = hash(key);
    const std::size_t set = reduce32(static_cast<uint32_t>(h >> 32), static_cast<uint32_t>(sets_));
    std::lock_guard<std::mutex> lock(stripes_[set % stripe_count_].mutex);
    BehaviourState* ways = entries_ + set * kWays;
    BehaviourState* free_way = nullptr;
    for (std::size_t i = 0; i < kWays; ++i) {
      BehaviourState& w = ways[i];
      if (!w.used) {
        if (!free_way) free_way = &w;
      } else if (w.key == key) {
        return f(&w);
      }
    }
    if (!create) return f(static_cast<BehaviourState*>(nullptr));
    BehaviourState* slot = free_way;
    if (slot) {
      used_.fetch_add(1, std::memory_order_relaxed);
    } else {
      slot = &ways[0];
      for (std::size_t i = 1; i < kWays; ++i) {
        const BehaviourState& w = ways[i];
        const bool w_once = w.n <= 1, s_once = slot->n <= 1;
        if (w_once != s_once ? w_once : w.last_seen < slot->last_seen) slot = &ways[i];
      }
      evictions_.fetch_add(1, std::memory_order_relaxed);
    }
    std::memset(static_cast<void*>(slot), 0, sizeof(BehaviourState));
    slot->key = key;
    slot->used = 1;
    return f(slot);
  }

 private:
  struct alignas(64) Stripe {
    std::mutex mutex;
  };

  uint64_t hash(const ClientKey& key) const { return hashing::client_key(key, seed_); }

  BehaviourState* entries_ = nullptr;
  std::size_t sets_ = 0;
  std::size_t stripe_count_ = 0;
  std::unique_ptr<Stripe[]> stripes_;
  uint64_t seed_ = 0;
  std::atomic<std::size_t> used_{0};
  std::atomic<uint64_t> evictions_{0};
};

BehaviourTable::BehaviourTable(const Options& options) : options_(options) {
  if (options_.max_clients == 0) {
    throw std::invalid_argument("BehaviourTable: max_clients must be at least 1");
  }
  const std::size_t blocks =
      options_.max_blocks ? options_.max_blocks : std::max<std::size_t>(8, options_.max_clients / 4);
  clients_ = std::make_unique<Store>(options_.max_clients, options_.stripes);
  blocks_ = std::make_unique<Store>(blocks, options_.stripes);
}

BehaviourTable::~BehaviourTable() = default;

ClientKey BehaviourTable::client_key(const IpAddress& address) const {
  return ClientKey::make(address, options_.client_v4_prefix, options_.client_v6_prefix, 0);
}

ClientKey BehaviourTable::block_key(const IpAddress& address) const {
  return ClientKey::make(address, options_.block_v4_prefix, options_.block_v6_prefix, 0);
}

FeatureVector BehaviourTable::update(const RequestView& view, int status_or_minus1, Nanos now) {
  const RequestTraits traits = RequestTraits::analyse(view);
  const uint64_t addr_hash = address_hash(view.client_ip);
  FeatureVector v;
  // The block first, copied out: the client's stripe lock is then the only one held while filling.
  BehaviourState block;
  blocks_->with(block_key(view.client_ip), true, [&](BehaviourState* b) {
    behaviour::apply(*b, traits, now, addr_hash, true);
    std::memcpy(static_cast<void*>(&block), b, offsetof(BehaviourState, pages));
    behaviour::apply_status(*b, status_or_minus1);
  });
  clients_->with(client_key(view.client_ip), true, [&](BehaviourState* c) {
    behaviour::apply(*c, traits, now, addr_hash, false);
    behaviour::fill(v, *c, block, traits);
    behaviour::apply_status(*c, status_or_minus1);
  });
  return v;
}

void BehaviourTable::report_status(const IpAddress& client, int status) {
  if (status < 0) return;
  blocks_->with(block_key(client), false, [&](BehaviourState* b) {
    if (b) behaviour::apply_status(*b, status);
  });
  clients_->with(client_key(client), false, [&](BehaviourState* c) {
    if (c) behaviour::apply_status(*c, status);
  });
}

std::optional<BehaviourState> BehaviourTable::find_client(const IpAddress& address) const {
  return clients_->with(client_key(address), false, [](BehaviourState* s) {
    return s ? std::optional<BehaviourState>(*s) : std::nullopt;
  });
}

std::optional<BehaviourState> BehaviourTable::find_block(const IpAddress& address) const {
  return blocks_->with(block_key(address), false, [](BehaviourState* s) {
    return s ? std::optional<BehaviourState>(*s) : std::nullopt;
  });
}

std::size_t BehaviourTable::clients() const { return clients_->size(); }
std::size_t BehaviourTable::blocks() const { return blocks_->size(); }
std::size_t BehaviourTable::client_capacity() const { return clients_->capacity(); }
std::size_t BehaviourTable::block_capacity() const { return blocks_->capacity(); }
std::uint64_t BehaviourTable::evictions() const {
  return clients_->evictions() + blocks_->evictions();
}
std::size_t BehaviourTable::memory_bytes() const {
  return sizeof(*this) + clients_->memory_bytes() + blocks_->memory_bytes();
}

}  // namespace crawlgate
