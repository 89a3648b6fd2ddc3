#include "crawlgate/rules/settings.h"

#include <string_view>

namespace crawlgate {
namespace {

bool is_host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

}  // namespace

bool HostPort::parse(std::string_view text, HostPort& out, std::string& error) {
  std::string_view host;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      error = "'" + std::string(text) + "' is not [IPV6]:PORT";
      return false;
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
    auto address = IpAddress::parse(host);
    if (!address || host.find(':') == std::string_view::npos) {
      error = "'" + std::string(host) + "' in '" + std::string(text) + "' is not an IPv6 address";
      return false;
    }
  } else {
    std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      error = "'" + std::string(text) + "' has no port (expected HOST:PORT)";
      return false;
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      error = "IPv6 address in '" + std::string(text) + "' must be in brackets: [V6]:PORT";
      return false;
    }
    if (host.empty()) {
      error = "'" + std::string(text) + "' has no host (expected HOST:PORT)";
      return false;
    }
    for (char c : host) {
      if (!is_host_char(c)) {
        error = "'" + std::string(host) + "' is not a valid host name";
        return false;
      }
    }
  }
  // Port 0 is accepted: binding to it picks a free port, which tests rely on.
  if (port_text.empty() || port_text.size() > 5) {
    error = "bad port in '" + std::string(text) + "'";
    return false;
  }
  unsigned port = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9') {
      error = "bad port in '" + std::string(text) + "'";
      return false;
    }
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port > 65535) {
    error = "port " + std::to_string(port) + " in '" + std::string(text) + "' is over 65535";
    return false;
  }
  out.host = std::string(host);
  out.port = static_cast<uint16_t>(port);
  return true;
}

std::string HostPort::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

bool UpstreamSettings::parse_url(std::string_view url, HostPort& out, std::string& error) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    if (url.substr(0, 8) == "https://") {
      error = "upstream '" + std::string(url) +
              "': https is not supported (terminate TLS in front of crawlgate, talk http to the "
              "site)";
    } else {
      error = "upstream '" + std::string(url) + "' must start with http://";
    }
    return false;
  }
  std::string_view rest = url.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#@") != std::string_view::npos) {
    error = "upstream '" + std::string(url) + "' must be http://HOST:PORT with no path or user";
    return false;
  }
  if (rest.empty()) {
    error = "upstream '" + std::string(url) + "' has no host";
    return false;
  }
  HostPort parsed;
  if (rest.find(':') == std::string_view::npos || (rest.front() == '[' && rest.back() == ']')) {
    // No explicit port: the http default.
    std::string with_port = std::string(rest) + ":80";
    if (!HostPort::parse(with_port, parsed, error)) return false;
  } else if (!HostPort::parse(rest, parsed, error)) {
    return false;
  }
  if (parsed.port == 0) {
    error = "upstream '" + std::string(url) + "' has port 0";
    return false;
  }
  out = std::move(parsed);
  return true;
}

}  // namespace crawlgate
