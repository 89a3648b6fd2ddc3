#include "crawlgate/classifier/access_log_reader.h"

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>

namespace crawlgate {
namespace {

std::string_view strip_line_end(std::string_view line) {
  if (line.ends_with('\n')) line.remove_suffix(1);
  if (line.ends_with('\r')) line.remove_suffix(1);
  return line;
}

// nlohmann gives strings as UTF-8; the writer only produces U+0000..U+00FF (\u00XX for every
// byte outside printable ASCII): map each code point back to its byte.
bool to_bytes(const std::string& utf8, std::string& out) {
  out.clear();
  out.reserve(utf8.size());
  for (std::size_t i = 0; i < utf8.size(); ++i) {
    auto c = static_cast<unsigned char>(utf8[i]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else if ((c == 0xc2 || c == 0xc3) && i + 1 < utf8.size()) {
      auto next = static_cast<unsigned char>(utf8[i + 1]);
      if ((next & 0xc0) != 0x80) return false;
      out.push_back(static_cast<char>(((c & 0x03) << 6) | (next & 0x3f)));
      ++i;
    } else {
      return false;
    }
  }
  return true;
}

bool get_string(const nlohmann::json& object, const char* key, std::string& out,
                std::string& error) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) {
    error = std::string("missing or non-string \"") + key + "\"";
    return false;
  }
  if (!to_bytes(it->get_ref<const std::string&>(), out)) {
    error = std::string("\"") + key + "\" has a character above U+00FF";
    return false;
  }
  return true;
}

bool parse_version_text(std::string_view text, int& version) {
  if (text == "1.1") {
    version = 11;
  } else if (text == "1.0") {
    version = 10;
  } else if (text == "2" || text == "2.0") {
    version = 20;
  } else if (text == "3" || text == "3.0") {
    version = 30;
  } else {
    return false;
  }
  return true;
}

bool set_address(LogRecord& out, std::string& error) {
  auto address = IpAddress::parse(out.ip);
  if (!address) {
    error = "client address '" + out.ip.substr(0, 64) + "' is not an IP address";
    return false;
  }
  out.address = *address;
  return true;
}

template <typename T>
bool parse_digits(std::string_view text, T& value) {
  if (text.empty()) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

// "10/Oct/2000:13:55:36 -0700" -> seconds since the epoch.
bool parse_clf_time(std::string_view text, double& ts) {
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  if (text.size() != 26 || text[2] != '/' || text[6] != '/' || text[11] != ':' ||
      text[14] != ':' || text[17] != ':' || text[20] != ' ' ||
      (text[21] != '+' && text[21] != '-')) {
    return false;
  }
  unsigned day = 0, hour = 0, minute = 0, second = 0, zone_hours = 0, zone_minutes = 0;
  int year = 0;
  unsigned month = 0;
  for (unsigned i = 0; i < 12; ++i) {
    if (text.substr(3, 3) == kMonths[i]) month = i + 1;
  }
  if (month == 0 || !parse_digits(text.substr(0, 2), day) ||
      !parse_digits(text.substr(7, 4), year) || !parse_digits(text.substr(12, 2), hour) ||
      !parse_digits(text.substr(15, 2), minute) || !parse_digits(text.substr(18, 2), second) ||
      !parse_digits(text.substr(22, 2), zone_hours) ||
      !parse_digits(text.substr(24, 2), zone_minutes)) {
    return false;
  }
  if (day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60 || zone_hours > 23 ||
      zone_minutes > 59) {
    return false;
  }
  // A day past the month's end counts on into the next month, as sys_days defines it.
  const std::chrono::sys_days date{std::chrono::year{year} / std::chrono::month{month} /
                                   std::chrono::day{day}};
  std::int64_t seconds = static_cast<std::int64_t>(date.time_since_epoch().count()) * 86400 +
                         hour * 3600 + minute * 60 + second;
  std::int64_t offset = (zone_hours * 3600 + zone_minutes * 60) * (text[21] == '-' ? -1 : 1);
  ts = static_cast<double>(seconds - offset);
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A quoted combined-log field starting at line[pos] == '"'. Undoes nginx's \xHH and Apache's
// \" and \\; leaves pos after the closing quote.
bool read_quoted(std::string_view line, std::size_t& pos, std::string& out) {
  out.clear();
  if (pos >= line.size() || line[pos] != '"') return false;
  ++pos;
  while (pos < line.size()) {
    char c = line[pos];
    if (c == '"') {
      ++pos;
      return true;
    }
    if (c == '\\' && pos + 1 < line.size()) {
      char next = line[pos + 1];
      if (next == '"' || next == '\\') {
        out.push_back(next);
        pos += 2;
        continue;
      }
      if (next == 'x' && pos + 3 < line.size()) {
        int high = hex_value(line[pos + 2]);
        int low = hex_value(line[pos + 3]);
        if (high >= 0 && low >= 0) {
          out.push_back(static_cast<char>(high << 4 | low));
          pos += 4;
          continue;
        }
      }
    }
    out.push_back(c);
    ++pos;
  }
  return false;  // no closing quote
}

std::string_view read_token(std::string_view line, std::size_t& pos) {
  std::size_t end = line.find(' ', pos);
  if (end == std::string_view::npos) end = line.size();
  std::string_view token = line.substr(pos, end - pos);
  pos = end;
  return token;
}

bool skip_space(std::string_view line, std::size_t& pos) {
  if (pos >= line.size() || line[pos] != ' ') return false;
  while (pos < line.size() && line[pos] == ' ') ++pos;
  return true;
}

}  // namespace

bool parse_jsonl_line(std::string_view line, LogRecord& out, std::string& error) {
  out = LogRecord{};
  line = strip_line_end(line);
  nlohmann::json json = nlohmann::json::parse(line.begin(), line.end(), nullptr,
                                              /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    error = "not JSON";
    return false;
  }
  if (!json.is_object()) {
    error = "not a JSON object";
    return false;
  }
  auto ts = json.find("ts");
  if (ts == json.end() || !ts->is_number()) {
    error = "missing or non-numeric \"ts\"";
    return false;
  }
  out.ts = ts->get<double>();
  if (!std::isfinite(out.ts)) {
    error = "\"ts\" is not finite";
    return false;
  }
  if (!get_string(json, "ip", out.ip, error) || !set_address(out, error)) return false;
  if (!get_string(json, "method", out.method, error)) return false;
  if (!get_string(json, "target", out.target, error)) return false;
  std::string version;
  if (!get_string(json, "version", version, error)) return false;
  if (!parse_version_text(version, out.version)) {
    error = "\"version\" is not one of \"1.0\", \"1.1\", \"2\", \"3\"";
    return false;
  }
  auto headers = json.find("headers");
  if (headers == json.end() || !headers->is_array()) {
    error = "missing \"headers\" (crawlgate logs them with access_log.headers: true)";
    return false;
  }
  for (const nlohmann::json& field : *headers) {
    if (!field.is_array() || field.size() != 2 || !field[0].is_string() || !field[1].is_string()) {
      error = "a header is not a [name, value] pair";
      return false;
    }
    std::string name, value;
    if (!to_bytes(field[0].get_ref<const std::string&>(), name) ||
        !to_bytes(field[1].get_ref<const std::string&>(), value)) {
      error = "a header has a character above U+00FF";
      return false;
    }
    out.headers.emplace_back(std::move(name), std::move(value));
  }
  if (auto status = json.find("status"); status != json.end() && status->is_number_integer()) {
    auto value = status->get<long long>();
    if (value >= 100 && value <= 999) out.status = static_cast<int>(value);
  }
  if (auto bytes = json.find("bytes"); bytes != json.end() && bytes->is_number_integer()) {
    auto value = bytes->get<long long>();
    if (value >= 0) out.bytes = value;
  }
  return true;
}

bool parse_combined_line(std::string_view line, LogRecord& out, std::string& error) {
  out = LogRecord{};
  line = strip_line_end(line);
  std::size_t pos = 0;
  out.ip = std::string(read_token(line, pos));
  if (out.ip.empty()) {
    error = "no client address";
    return false;
  }
  if (!set_address(out, error)) return false;
  if (!skip_space(line, pos) || read_token(line, pos).empty() || !skip_space(line, pos) ||
      read_token(line, pos).empty() || !skip_space(line, pos)) {
    error = "no ident and user fields after the address";
    return false;
  }
  if (pos >= line.size() || line[pos] != '[') {
    error = "no [time] field";
    return false;
  }
  std::size_t close = line.find(']', pos);
  if (close == std::string_view::npos || !parse_clf_time(line.substr(pos + 1, close - pos - 1),
                                                         out.ts)) {
    error = "time is not [dd/Mon/yyyy:HH:MM:SS +zzzz]";
    return false;
  }
  pos = close + 1;
  std::string request_line;
  if (!skip_space(line, pos) || !read_quoted(line, pos, request_line)) {
    error = "no quoted request line";
    return false;
  }
  // Split at the first and the last space: a target with a raw space stays one target.
  std::size_t first = request_line.find(' ');
  std::size_t last = request_line.rfind(' ');
  if (first == std::string::npos || first == last || first == 0) {
    error = "request line is not \"METHOD target HTTP/x.y\"";
    return false;
  }
  std::string_view protocol = std::string_view(request_line).substr(last + 1);
  if (!protocol.starts_with("HTTP/") || !parse_version_text(protocol.substr(5), out.version)) {
    error = "request line has no HTTP version";
    return false;
  }
  out.method = request_line.substr(0, first);
  out.target = request_line.substr(first + 1, last - first - 1);
  if (out.target.empty()) {
    error = "request line has no target";
    return false;
  }
  std::string_view status_text, bytes_text;
  if (!skip_space(line, pos) || (status_text = read_token(line, pos)).empty() ||
      !skip_space(line, pos) || (bytes_text = read_token(line, pos)).empty()) {
    error = "no status and bytes after the request line";
    return false;
  }
  // 0 (or "000") is what a server logs for a request it never answered: status unknown.
  if (status_text.size() > 3 || !parse_digits(status_text, out.status)) {
    error = "status is not a number of at most three digits";
    return false;
  }
  if (out.status < 100) out.status = -1;
  if (bytes_text != "-" && !parse_digits(bytes_text, out.bytes)) {
    error = "bytes is neither a number nor -";
    return false;
  }
  // Referer and User-Agent are optional: common log format stops here.
  std::string referer, user_agent;
  if (skip_space(line, pos)) {
    if (!read_quoted(line, pos, referer) || !skip_space(line, pos) ||
        !read_quoted(line, pos, user_agent)) {
      error = "referer and user-agent are not two quoted fields";
      return false;
    }
  }
  if (!user_agent.empty() && user_agent != "-") out.headers.emplace_back("User-Agent", user_agent);
  if (!referer.empty() && referer != "-") out.headers.emplace_back("Referer", referer);
  return true;
}

bool parse_log_line(LogFormat format, std::string_view line, LogRecord& out, std::string& error) {
  return format == LogFormat::kJsonLines ? parse_jsonl_line(line, out, error)
                                         : parse_combined_line(line, out, error);
}

LogFormat detect_log_format(std::string_view first_line) {
  std::size_t start = first_line.find_first_not_of(" \t");
  return start != std::string_view::npos && first_line[start] == '{' ? LogFormat::kJsonLines
                                                                     : LogFormat::kCombined;
}

std::optional<LogFormat> log_format_from_name(std::string_view name) {
  if (name == "jsonl" || name == "json") return LogFormat::kJsonLines;
  if (name == "combined") return LogFormat::kCombined;
  return std::nullopt;
}

}  // namespace crawlgate
