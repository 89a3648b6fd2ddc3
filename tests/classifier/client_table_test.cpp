#include "crawlgate/classifier/client_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

namespace crawlgate {
namespace {

constexpr Nanos kSec = 1'000'000'000;

ClientKey v4_key(uint32_t address, uint16_t limit_id = 1) {
  return ClientKey::make(IpAddress::v4(address), 32, 64, limit_id);
}

ClientKey v6_key(uint64_t net, uint64_t host = 1) {
  std::array<uint8_t, 16> bytes{0x20, 0x01, 0x0d, 0xb8};
  for (int i = 0; i < 4; ++i) bytes[4 + i] = static_cast<uint8_t>(net >> (24 - 8 * i));
  for (int i = 0; i < 8; ++i) bytes[8 + i] = static_cast<uint8_t>(host >> (56 - 8 * i));
  return ClientKey::make(IpAddress::v6(bytes), 32, 64, 1);
}

struct KeyHash {
  std::size_t operator()(const ClientKey& k) const {
    std::size_t h = k.limit_id * 31u + k.prefix_len;
    for (uint8_t b : k.address) h = h * 1099511628211ULL ^ b;
    return h;
  }
};

TEST(ClientTableTest, CreatesAndFinds) {
  ClientTable table(1000);
  const ClientKey key = v4_key(0xC0000201);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_FALSE(table.find(key).has_value());

  const int result = table.with_entry(key, 5 * kSec, [&](ClientEntry& e, bool created) {
    EXPECT_TRUE(created);
    EXPECT_EQ(e.key, key);
    EXPECT_EQ(e.limit.tat, 0);
    EXPECT_EQ(e.last_seen, 0);
    e.limit.tat = 42;
    return 7;
  });
  EXPECT_EQ(result, 7);
  EXPECT_EQ(table.size(), 1u);

  table.with_entry(key, 6 * kSec, [&](ClientEntry& e, bool created) {
    EXPECT_FALSE(created);
    EXPECT_EQ(e.limit.tat, 42);
    EXPECT_EQ(e.last_seen, 5 * kSec);  // the previous visit, seen by f
  });
  const auto found = table.find(key);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->key, key);
  EXPECT_EQ(found->limit.tat, 42);
  EXPECT_EQ(found->last_seen, 6 * kSec);
  EXPECT_FALSE(table.find(v4_key(0xC0000202)).has_value());
  EXPECT_FALSE(table.find(v4_key(0xC0000201, 2)).has_value());
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(table.evictions(), 0u);
}

TEST(ClientTableTest, RateLimitsThroughTheTable) {
  ClientTable table(100);
  const RateLimit limit{1, 10};
  const ClientKey a = v4_key(1), b = v4_key(2);
  auto hit = [&](const ClientKey& key, Nanos now) {
    return table.with_entry(key, now, [&](ClientEntry& e, bool) {
      return gcra_update(e.limit, limit, 1, now);
    });
  };
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(hit(a, kSec).allowed);
  const LimitDecision refused = hit(a, kSec);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, kSec);
  EXPECT_TRUE(hit(b, kSec).allowed);  // another client has its own budget
  EXPECT_TRUE(hit(a, 2 * kSec).allowed);
}

TEST(ClientTableTest, CapacityIsExactAndHonoured) {
  ClientTable table(100, 8);
  EXPECT_EQ(table.capacity(), 100u);
  EXPECT_EQ(table.shard_count(), 8u);
  uint64_t created = 0;
  for (uint32_t i = 0; i < 5000; ++i) {
    table.with_entry(v4_key(i), i, [&](ClientEntry&, bool c) { created += c; });
    ASSERT_LE(table.size(), 100u);
  }
  EXPECT_EQ(created, 5000u);
  EXPECT_EQ(table.size(), 100u);  // every shard fills up
  EXPECT_EQ(table.evictions(), 4900u);

  ClientTable few(10);  // fewer entries than shards: shards shrink so the cap is exact
  EXPECT_EQ(few.capacity(), 10u);
  EXPECT_EQ(few.shard_count(), 10u);
  for (uint32_t i = 0; i < 1000; ++i) few.with_entry(v4_key(i), i, [](ClientEntry&, bool) {});
  EXPECT_EQ(few.size(), 10u);

  ClientTable one(1, 64);
  one.with_entry(v4_key(1), 1, [](ClientEntry&, bool) {});
  one.with_entry(v4_key(2), 2, [](ClientEntry&, bool) {});
  EXPECT_EQ(one.size(), 1u);
  EXPECT_TRUE(one.find(v4_key(2)).has_value());
  EXPECT_FALSE(one.find(v4_key(1)).has_value());

  EXPECT_THROW(ClientTable(0), std::invalid_argument);
}

TEST(ClientTableTest, MemoryPerEntryIsSmall) {
  static_assert(ClientTable::bytes_per_entry() <= 200);
  EXPECT_LT(ClientTable::bytes_per_entry(), 64u);
  ClientTable table(1'000'000);
  // Allocation tracks bytes_per_entry() closely (the ref bit is 1/8 byte, not 1; plus headers).
  EXPECT_LE(table.memory_bytes(), table.capacity() * ClientTable::bytes_per_entry());
  EXPECT_GE(table.memory_bytes(), table.capacity() * (ClientTable::bytes_per_entry() - 2));
  std::printf("bytes_per_entry() = %zu, memory_bytes()/capacity = %.2f\n",
              ClientTable::bytes_per_entry(),
              static_cast<double>(table.memory_bytes()) / static_cast<double>(table.capacity()));
}

TEST(ClientTableTest, FloodKeepsSizeAndMemoryBoundedAndHotEntriesSurvive) {
  ClientTable table(10'000);
  const ClientKey hot = v6_key(0xFFFFFFFF);
  const ClientKey cold = v6_key(0xFFFFFFFE);
  uint64_t hot_creations = 0;
  uint64_t created = 0;
  auto touch_hot = [&](Nanos now) {
    table.with_entry(hot, now, [&](ClientEntry& e, bool c) {
      hot_creations += c;
      created += c;
      ++e.limit.tat;  // a visit counter: it survives only if the entry does
    });
  };
  touch_hot(0);
  table.with_entry(cold, 0, [&](ClientEntry&, bool c) { created += c; });
  const std::size_t memory = table.memory_bytes();

  constexpr uint32_t kFlood = 2'000'000;
  for (uint32_t i = 0; i < kFlood; ++i) {
    // Alternate IPv4 /32s and IPv6 /64s; all distinct.
    const ClientKey key = (i & 1) ? v4_key(i) : v6_key(i, i * 977u);
    table.with_entry(key, i + 1, [&](ClientEntry&, bool c) { created += c; });
    if (i % 1000 == 999) touch_hot(i + 1);
    if (i % 100'000 == 0) {
      ASSERT_LE(table.size(), table.capacity());
      ASSERT_EQ(table.memory_bytes(), memory);
    }
  }
  EXPECT_LE(table.size(), table.capacity());
  EXPECT_EQ(table.size(), table.capacity());
  EXPECT_EQ(table.memory_bytes(), memory);
  EXPECT_EQ(created, table.size() + table.evictions());

  EXPECT_EQ(hot_creations, 1u) << "the hot entry was evicted during the flood";
  const auto found = table.find(hot);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->limit.tat, 1 + kFlood / 1000);
  EXPECT_FALSE(table.find(cold).has_value()) << "a cold entry should not outlive the flood";
}

// A randomised check of the index (probing, backward-shift deletion, CLOCK eviction): every hit
// must find exactly the state written for that key, and every reported entry must be consistent.
void churn_against_model(std::size_t capacity, std::size_t shards, uint32_t key_space, int ops) {
  ClientTable table(capacity, shards);
  std::unordered_map<ClientKey, Nanos, KeyHash> model;  // key -> last value written
  std::mt19937_64 rng(12345 + capacity + shards);
  uint64_t created_total = 0;
  for (int op = 0; op < ops; ++op) {
    // Skewed: half the operations go to a small hot set.
    const uint32_t k = (rng() & 1) ? static_cast<uint32_t>(rng() % (key_space / 16 + 1))
                                   : static_cast<uint32_t>(rng() % key_space);
    const ClientKey key = (k & 1) ? v4_key(k) : v6_key(k);
    const Nanos value = op + 1;
    table.with_entry(key, value, [&](ClientEntry& e, bool created) {
      ASSERT_EQ(e.key, key);
      if (created) {
        ++created_total;
        EXPECT_EQ(e.limit.tat, 0);
        EXPECT_EQ(e.last_seen, 0);
      } else {
        auto it = model.find(key);
        ASSERT_NE(it, model.end());
        EXPECT_EQ(e.limit.tat, it->second);
        EXPECT_EQ(e.last_seen, it->second);
      }
      e.limit.tat = value;
    });
    model[key] = value;
  }
  std::size_t present = 0;
  for (const auto& [key, value] : model) {
    if (auto found = table.find(key)) {
      ++present;
      EXPECT_EQ(found->key, key);
      EXPECT_EQ(found->limit.tat, value);
    }
  }
  EXPECT_EQ(present, table.size());
  EXPECT_LE(table.size(), capacity);
  EXPECT_EQ(created_total, table.size() + table.evictions());
}

TEST(ClientTableTest, IndexStaysConsistentUnderChurn) {
  churn_against_model(1, 1, 10, 2'000);
  churn_against_model(7, 1, 50, 20'000);
  churn_against_model(64, 1, 1'000, 200'000);
  churn_against_model(1'000, 16, 5'000, 200'000);
  churn_against_model(4'096, 64, 3'000, 100'000);  // no eviction at all
}

TEST(ClientTableTest, ConcurrentUseIsConsistent) {
  constexpr int kThreads = 4;
  {
    // Shared keys, no eviction: per-key counters add up exactly.
    ClientTable table(10'000);
    constexpr int kKeys = 64, kPerThread = kKeys * 800;
    std::vector<std::thread> workers;
    for (int t = 0; t < kThreads; ++t) {
      workers.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          table.with_entry(v4_key((i + t) % kKeys), i, [](ClientEntry& e, bool) { ++e.limit.tat; });
        }
      });
    }
    for (auto& w : workers) w.join();
    EXPECT_EQ(table.size(), static_cast<std::size_t>(kKeys));
    for (int k = 0; k < kKeys; ++k) {
      const auto e = table.find(v4_key(k));
      ASSERT_TRUE(e.has_value());
      EXPECT_EQ(e->limit.tat, kThreads * kPerThread / kKeys);
    }
  }
  {
    // Distinct keys with eviction plus one shared rate-limited key on a frozen clock.
    ClientTable table(1'000, 16);
    const ClientKey shared = v6_key(0xABCDEF);
    const RateLimit limit{1, 25};
    std::atomic<uint64_t> created{0};
    std::atomic<int> admitted{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < kThreads; ++t) {
      workers.emplace_back([&, t] {
        for (uint32_t i = 0; i < 100'000; ++i) {
          const ClientKey key = v4_key(static_cast<uint32_t>(t) << 24 | i);
          table.with_entry(key, kSec, [&](ClientEntry& e, bool c) {
            if (c) created.fetch_add(1);
            EXPECT_EQ(e.key, key);
          });
          if (i % 100 == 0) {
            table.with_entry(shared, kSec, [&](ClientEntry& e, bool c) {
              if (c) created.fetch_add(1);
              if (gcra_update(e.limit, limit, 1, kSec).allowed) admitted.fetch_add(1);
            });
          }
        }
      });
    }
    for (auto& w : workers) w.join();
    EXPECT_LE(table.size(), table.capacity());
    EXPECT_EQ(created.load(), table.size() + table.evictions());
    // The shared key is touched often enough that CLOCK keeps it, so its budget is one burst.
    EXPECT_EQ(admitted.load(), 25);
  }
}

}  // namespace
}  // namespace crawlgate
