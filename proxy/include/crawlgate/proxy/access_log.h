// The access log: one line per request, formatted on the I/O thread and written by a dedicated
// writer thread, so a slow or full disk never blocks request handling. When the bounded queue is
// full, lines are dropped and counted rather than stalling the proxy.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "crawlgate/proxy/pipeline.h"
#include "crawlgate/rules/request_view.h"
#include "crawlgate/rules/settings.h"

namespace crawlgate::proxy {

struct AccessLogEntry {
  std::chrono::system_clock::time_point start;
  IpAddress client;
  IpAddress peer;
  std::string_view method;
  std::string_view target;
  int version = 11;
  std::span<const HeaderField> headers;
  int status = 0;
  std::uint64_t bytes = 0;  // response body bytes sent to the client
  double duration_ms = 0;
  std::string_view request_id;
  const RequestContext* context = nullptr;
};

// crawlgate's JSON-lines format (docs/access-log.md); the input format of `crawlgate replay`.
std::string format_jsonl(const AccessLogEntry& entry, bool with_headers, bool anonymize_ip);
// nginx/Apache "combined".
std::string format_combined(const AccessLogEntry& entry, bool anonymize_ip);
// Appends `text` as a JSON string literal (with quotes).
void append_json_string(std::string& out, std::string_view text);

class AccessLog {
 public:
  explicit AccessLog(AccessLogSettings settings);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  bool enabled() const { return enabled_; }
  void log(const AccessLogEntry& entry);
  // Asks the writer to reopen the file (SIGUSR1, after logrotate moved it).
  void reopen() { reopen_requested_.store(true, std::memory_order_relaxed); wake(); }
  // Blocks until every queued line was handed to the kernel (tests, shutdown).
  void flush();

  std::uint64_t lines_written() const { return written_.load(std::memory_order_relaxed); }
  std::uint64_t lines_dropped() const { return dropped_.load(std::memory_order_relaxed); }
  std::uint64_t write_errors() const { return write_errors_.load(std::memory_order_relaxed); }

 private:
  void run_writer();
  void open_file();
  void wake();

  AccessLogSettings settings_;
  bool enabled_ = false;
  int fd_ = -1;
  bool owns_fd_ = false;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::condition_variable flushed_cv_;
  std::vector<std::string> queue_;
  std::uint64_t enqueued_ = 0;
  std::uint64_t handled_ = 0;
  bool stopping_ = false;
  std::atomic<bool> reopen_requested_{false};

  std::atomic<std::uint64_t> written_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> write_errors_{0};
  std::thread writer_;
};

}  // namespace crawlgate::proxy
