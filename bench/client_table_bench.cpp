// client_table_bench: the per-request cost of the client table (ClientTable::with_entry plus a
// GCRA update) for hits and for misses that evict, and the memory per tracked client at 1,000,000
// clients.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "crawlgate/classifier/client_table.h"
#include "crawlgate/classifier/gcra.h"

namespace crawlgate {
namespace {

const RateLimit kLimit{10, 100};

// Distinct keys without IpAddress parsing: an IPv4 /32 per index below 2^32.
ClientKey key_for(uint64_t i) {
  ClientKey key;
  key.address[10] = key.address[11] = 0xff;
  key.address[12] = static_cast<uint8_t>(i >> 24);
  key.address[13] = static_cast<uint8_t>(i >> 16);
  key.address[14] = static_cast<uint8_t>(i >> 8);
  key.address[15] = static_cast<uint8_t>(i);
  key.limit_id = static_cast<uint16_t>(1 + (i >> 32));
  key.prefix_len = 128;
  return key;
}

std::vector<ClientKey> shuffled_keys(std::size_t n) {
  std::vector<uint64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(42));
  std::vector<ClientKey> keys;
  keys.reserve(n);
  for (uint64_t i : order) keys.push_back(key_for(i));
  return keys;
}

inline bool hit(ClientTable& table, const ClientKey& key, Nanos now) {
  return table.with_entry(key, now, [&](ClientEntry& e, bool) {
    return gcra_update(e.limit, kLimit, 1, now).allowed;
  });
}

// Inserts `clients` keys into `table` and returns those still present, shuffled. Shards fill
// unevenly (each holds capacity/shards), so a table filled to capacity has evicted some already:
// only the survivors make a pure-hit working set.
std::vector<ClientKey> fill(ClientTable& table, std::size_t clients) {
  std::vector<ClientKey> keys = shuffled_keys(clients);
  for (const ClientKey& key : keys) hit(table, key, 1);
  std::erase_if(keys, [&](const ClientKey& key) { return !table.find(key).has_value(); });
  return keys;
}

// Hits: a table of `clients` capacity filled with `clients` keys, the survivors visited in a
// shuffled order (cache misses grow with the working set).
void BM_Hit(benchmark::State& state) {
  ClientTable table(static_cast<std::size_t>(state.range(0)));
  const std::vector<ClientKey> keys = fill(table, table.capacity());
  const uint64_t evictions_before = table.evictions();
  Nanos now = 1'000'000'000;
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(hit(table, keys[i], now += 1000));
    if (++i == keys.size()) i = 0;
  }
  state.counters["working_set"] = static_cast<double>(keys.size());
  state.counters["evictions"] = static_cast<double>(table.evictions() - evictions_before);
}
BENCHMARK(BM_Hit)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);

// Hits from several threads on one shared table (64 shards, one mutex each).
void BM_HitThreads(benchmark::State& state) {
  constexpr std::size_t kClients = 100'000;
  static ClientTable* table = nullptr;
  static std::vector<ClientKey>* keys = nullptr;
  if (state.thread_index() == 0) {
    table = new ClientTable(kClients);
    keys = new std::vector<ClientKey>(fill(*table, kClients));
  }
  // Google Benchmark starts the timed loop of all threads together, after setup by thread 0.
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 7919 % keys->size();
  Nanos now = 1'000'000'000;
  for (auto _ : state) {
    benchmark::DoNotOptimize(hit(*table, (*keys)[i], now += 1000));
    if (++i == keys->size()) i = 0;
  }
  if (state.thread_index() == 0) {
    delete table;
    delete keys;
  }
}
BENCHMARK(BM_HitThreads)->Threads(1)->Threads(2)->UseRealTime();

// Misses: a full table of 1,000,000 clients and a new key every iteration, so every call evicts
// (CLOCK sweep, index deletion with backward shift, insertion).
void BM_MissEvict(benchmark::State& state) {
  const std::size_t clients = static_cast<std::size_t>(state.range(0));
  ClientTable table(clients);
  uint64_t next = 0;
  Nanos now = 1'000'000'000;
  for (; next < clients; ++next) hit(table, key_for(next), now);
  const uint64_t evictions_before = table.evictions();
  for (auto _ : state) {
    benchmark::DoNotOptimize(hit(table, key_for(next++), now += 1000));
  }
  state.counters["evictions/iter"] =
      static_cast<double>(table.evictions() - evictions_before) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_MissEvict)->Arg(1'000'000);

// Just the arithmetic, for scale.
void BM_GcraUpdate(benchmark::State& state) {
  GcraState s;
  Nanos now = 1'000'000'000;
  for (auto _ : state) benchmark::DoNotOptimize(gcra_update(s, kLimit, 1, now += 1000));
}
BENCHMARK(BM_GcraUpdate);

void BM_SharedGcra(benchmark::State& state) {
  static SharedGcra shared;
  Nanos now = 1'000'000'000;
  for (auto _ : state) benchmark::DoNotOptimize(shared.update(kLimit, 1, now += 1000));
}
BENCHMARK(BM_SharedGcra)->Threads(1)->Threads(2)->UseRealTime();

std::size_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  if (std::fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
  std::fclose(f);
  return resident * 4096;
}

// Memory per tracked client at 1,000,000 clients: the static figure (entry + index + bit), what
// the table allocated, and the resident growth once all 1,000,000 are in use.
void BM_MemoryPerClient(benchmark::State& state) {
  const std::size_t clients = static_cast<std::size_t>(state.range(0));
  double allocated = 0, resident = 0;
  for (auto _ : state) {
    const std::size_t before = resident_bytes();
    auto table = std::make_unique<ClientTable>(clients);
    for (uint64_t i = 0; i < clients; ++i) hit(*table, key_for(i), 1'000'000'000);
    const std::size_t after = resident_bytes();
    allocated = static_cast<double>(table->memory_bytes()) / static_cast<double>(clients);
    resident = static_cast<double>(after - before) / static_cast<double>(clients);
    benchmark::DoNotOptimize(table->size());
  }
  state.counters["bytes_per_entry"] = static_cast<double>(ClientTable::bytes_per_entry());
  state.counters["allocated_B/client"] = allocated;
  state.counters["resident_B/client"] = resident;
  state.counters["sizeof_ClientEntry"] = sizeof(ClientEntry);
}
BENCHMARK(BM_MemoryPerClient)->Arg(1'000'000)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace crawlgate

BENCHMARK_MAIN();
