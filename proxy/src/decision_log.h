// Recent decisions per I/O thread, for `GET /clients/<ip>` on the admin listener. A fixed ring of
// fixed-size entries: recording is a short memcpy under an uncontended lock, memory is bounded,
// and only the admin listener (rarely) reads across the rings.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "crawlgate/rules/ip_address.h"

namespace crawlgate::proxy {

class DecisionLog {
 public:
  static constexpr std::size_t kCapacity = 4096;

  struct Entry {
    IpAddress client;
    double ts = 0;  // Unix seconds
    int status = 0;
    bool enforced = true;
    char request_id[48] = {};
    char traffic_class[32] = {};
    char rule[80] = {};
    char action[16] = {};
    char method[12] = {};
    char target[96] = {};
  };

  void record(const IpAddress& client, double ts, int status, bool enforced,
              std::string_view request_id, std::string_view traffic_class, std::string_view rule,
              std::string_view action, std::string_view method, std::string_view target) {
    std::lock_guard lock(mutex_);
    Entry& entry = entries_[next_++ % kCapacity];
    entry.client = client;
    entry.ts = ts;
    entry.status = status;
    entry.enforced = enforced;
    copy(entry.request_id, request_id);
    copy(entry.traffic_class, traffic_class);
    copy(entry.rule, rule);
    copy(entry.action, action);
    copy(entry.method, method);
    copy(entry.target, target);
  }

  // The newest entries for `client`, newest first.
  void find(const IpAddress& client, std::size_t max, std::vector<Entry>& out) const {
    std::lock_guard lock(mutex_);
    std::size_t count = std::min<std::size_t>(next_, kCapacity);
    std::size_t found = 0;
    for (std::size_t i = 0; i < count && found < max; ++i) {
      const Entry& entry = entries_[(next_ - 1 - i) % kCapacity];
      if (entry.client == client) {
        out.push_back(entry);
        ++found;
      }
    }
  }

 private:
  template <std::size_t N>
  static void copy(char (&to)[N], std::string_view from) {
    std::size_t n = std::min(from.size(), N - 1);
    if (n) std::memcpy(to, from.data(), n);  // an empty view may carry a null pointer
    to[n] = '\0';
  }

  mutable std::mutex mutex_;
  std::array<Entry, kCapacity> entries_{};
  std::uint64_t next_ = 0;
};

}  // namespace crawlgate::proxy
