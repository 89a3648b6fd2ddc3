#include "access_log_line.h"

#include <cmath>

#include <nlohmann/json.hpp>

namespace crawlgate::fuzz {
namespace {

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

}  // namespace

bool parse_access_log_line(std::string_view line, LogRecord& out, std::string& error) {
  out = LogRecord{};
  if (line.ends_with('\n')) line.remove_suffix(1);
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
  if (!get_string(json, "ip", out.ip, error)) return false;
  auto address = IpAddress::parse(out.ip);
  if (!address) {
    error = "\"ip\" is not an address";
    return false;
  }
  out.address = *address;
  if (!get_string(json, "method", out.method, error)) return false;
  if (!get_string(json, "target", out.target, error)) return false;
  std::string version;
  if (!get_string(json, "version", version, error)) return false;
  if (version == "1.1") {
    out.version = 11;
  } else if (version == "1.0") {
    out.version = 10;
  } else {
    error = "\"version\" is neither \"1.0\" nor \"1.1\"";
    return false;
  }
  auto headers = json.find("headers");
  if (headers != json.end()) {
    if (!headers->is_array()) {
      error = "\"headers\" is not an array";
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
  }
  return true;
}

}  // namespace crawlgate::fuzz
