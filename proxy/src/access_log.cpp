#include "crawlgate/proxy/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace crawlgate::proxy {
namespace {

std::string client_address(const IpAddress& address, bool anonymize) {
  if (!anonymize) return address.to_string();
  return address.masked(address.is_v4() ? 24 : 48).to_string();
}

bool is_redacted(std::string_view name) {
  return iequals(name, "cookie") || iequals(name, "authorization") ||
         iequals(name, "proxy-authorization");
}

void append_double(std::string& out, double value, int decimals) {
  char buffer[64];
  int n = std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  out.append(buffer, n > 0 ? static_cast<std::size_t>(n) : 0);
}

// nginx escapes '"', '\' and bytes outside printable ASCII as \xHH in combined logs.
void append_combined_field(std::string& out, std::string_view text) {
  if (text.empty()) {
    out.push_back('-');
    return;
  }
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\' || c < 0x20 || c >= 0x7f) {
      out.append("\\x");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(ch);
    }
  }
}

}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      default:
        // Control bytes and bytes >= 0x80 are escaped as \u00XX: header bytes are not
        // guaranteed UTF-8, and every line must stay valid JSON. replay maps them back to bytes.
        if (c < 0x20 || c >= 0x7f) {
          out.append("\\u00");
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xf]);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

std::string format_jsonl(const AccessLogEntry& entry, bool with_headers, bool anonymize_ip) {
  std::string line;
  line.reserve(256 + (with_headers ? 512 : 0));
  double ts = std::chrono::duration<double>(entry.start.time_since_epoch()).count();
  line.append("{\"ts\":");
  append_double(line, ts, 6);
  line.append(",\"ip\":");
  append_json_string(line, client_address(entry.client, anonymize_ip));
  line.append(",\"peer\":");
  append_json_string(line, client_address(entry.peer, anonymize_ip));
  line.append(",\"method\":");
  append_json_string(line, entry.method);
  line.append(",\"target\":");
  append_json_string(line, entry.target);
  line.append(entry.version == 10 ? ",\"version\":\"1.0\"" : ",\"version\":\"1.1\"");
  if (with_headers) {
    line.append(",\"headers\":[");
    bool first = true;
    for (const HeaderField& field : entry.headers) {
      if (!first) line.push_back(',');
      first = false;
      line.push_back('[');
      append_json_string(line, field.name);
      line.push_back(',');
      append_json_string(line, is_redacted(field.name) ? std::string_view("[redacted]")
                                                       : field.value);
      line.push_back(']');
    }
    line.push_back(']');
  }
  line.append(",\"status\":").append(std::to_string(entry.status));
  line.append(",\"bytes\":").append(std::to_string(entry.bytes));
  line.append(",\"duration_ms\":");
  append_double(line, entry.duration_ms, 3);
  line.append(",\"request_id\":");
  append_json_string(line, entry.request_id);
  if (const RequestContext* context = entry.context) {
    if (!context->traffic_class.empty()) {
      line.append(",\"class\":");
      append_json_string(line, context->traffic_class);
    }
    if (!context->rule.empty()) {
      line.append(",\"rule\":");
      append_json_string(line, context->rule);
    }
    if (context->score >= 0) {
      line.append(",\"score\":");
      append_double(line, context->score, 4);
    }
    if (!context->top_features.empty()) {
      line.append(",\"top\":");
      append_json_string(line, context->top_features);
    }
    if (!context->action.empty()) {
      line.append(",\"action\":");
      append_json_string(line, context->action);
      line.append(context->enforced ? ",\"enforced\":true" : ",\"enforced\":false");
    }
  }
  line.append("}\n");
  return line;
}

std::string format_combined(const AccessLogEntry& entry, bool anonymize_ip) {
  std::string line;
  line.reserve(256);
  line.append(client_address(entry.client, anonymize_ip)).append(" - - [");
  std::time_t seconds = std::chrono::system_clock::to_time_t(entry.start);
  std::tm local{};
  localtime_r(&seconds, &local);
  char time_buffer[64];
  std::size_t n = std::strftime(time_buffer, sizeof time_buffer, "%d/%b/%Y:%H:%M:%S %z", &local);
  line.append(time_buffer, n).append("] \"");
  append_combined_field(line, entry.method);
  line.push_back(' ');
  append_combined_field(line, entry.target);
  line.append(entry.version == 10 ? " HTTP/1.0\" " : " HTTP/1.1\" ");
  line.append(std::to_string(entry.status)).push_back(' ');
  line.append(std::to_string(entry.bytes)).append(" \"");
  std::string_view referer, user_agent;
  for (const HeaderField& field : entry.headers) {
    if (referer.empty() && iequals(field.name, "referer")) referer = field.value;
    if (user_agent.empty() && iequals(field.name, "user-agent")) user_agent = field.value;
  }
  append_combined_field(line, referer);
  line.append("\" \"");
  append_combined_field(line, user_agent);
  line.append("\"\n");
  return line;
}

AccessLog::AccessLog(AccessLogSettings settings) : settings_(std::move(settings)) {
  enabled_ = !settings_.path.empty();
  if (!enabled_) return;
  open_file();
  writer_ = std::thread([this] { run_writer(); });
}

AccessLog::~AccessLog() {
  if (!enabled_) return;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  writer_.join();
  if (owns_fd_ && fd_ >= 0) ::close(fd_);
}

void AccessLog::open_file() {
  if (settings_.path == "-") {
    fd_ = STDOUT_FILENO;
    owns_fd_ = false;
    return;
  }
  int fd = ::open(settings_.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    // Keep the old descriptor (if any): losing the log is better than losing requests.
    std::fprintf(stderr, "crawlgate: cannot open access log %s: %s\n", settings_.path.c_str(),
                 std::strerror(errno));
    return;
  }
  if (owns_fd_ && fd_ >= 0) ::close(fd_);
  fd_ = fd;
  owns_fd_ = true;
}

void AccessLog::wake() { cv_.notify_one(); }

void AccessLog::log(const AccessLogEntry& entry) {
  if (!enabled_) return;
  std::string line = settings_.format == AccessLogFormat::kCombined
                         ? format_combined(entry, settings_.anonymize_ip)
                         : format_jsonl(entry, settings_.headers, settings_.anonymize_ip);
  bool notify = false;
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= settings_.queue_max) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    notify = queue_.empty();
    queue_.push_back(std::move(line));
    ++enqueued_;
  }
  if (notify) cv_.notify_one();
}

void AccessLog::flush() {
  if (!enabled_) return;
  std::unique_lock lock(mutex_);
  std::uint64_t target = enqueued_;
  flushed_cv_.wait(lock, [&] { return handled_ >= target; });
}

void AccessLog::run_writer() {
  std::vector<std::string> batch;
  std::string buffer;
  while (true) {
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] {
        return stopping_ || !queue_.empty() || reopen_requested_.load(std::memory_order_relaxed);
      });
      batch.swap(queue_);
      if (batch.empty() && stopping_) break;
    }
    if (reopen_requested_.exchange(false, std::memory_order_relaxed)) open_file();
    buffer.clear();
    for (const std::string& line : batch) buffer.append(line);
    std::size_t offset = 0;
    bool failed = fd_ < 0;
    while (!failed && offset < buffer.size()) {
      ssize_t n = ::write(fd_, buffer.data() + offset, buffer.size() - offset);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        failed = true;
        break;
      }
      offset += static_cast<std::size_t>(n);
    }
    if (failed) {
      // A full disk (ENOSPC) or a vanished file: count and keep serving.
      write_errors_.fetch_add(1, std::memory_order_relaxed);
      dropped_.fetch_add(batch.size(), std::memory_order_relaxed);
    } else {
      written_.fetch_add(batch.size(), std::memory_order_relaxed);
    }
    {
      std::lock_guard lock(mutex_);
      handled_ += batch.size();
    }
    flushed_cv_.notify_all();
    batch.clear();
  }
  std::lock_guard lock(mutex_);
  flushed_cv_.notify_all();
}

}  // namespace crawlgate::proxy
