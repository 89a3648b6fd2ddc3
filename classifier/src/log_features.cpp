#include "crawlgate/classifier/log_features.h"

#include <charconv>
#include <cmath>
#include <istream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <vector>

#include "crawlgate/classifier/features.h"
#include "crawlgate/rules/request_view.h"

namespace crawlgate {

using json = nlohmann::json;

namespace {

// The shortest text that reads back as exactly the same double (what the proxy computes), so a
// split threshold learned from the CSV sends every value the same way in Python and in C++.
void append_number(std::string& out, double v) {
  char buf[32];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_csv_field(std::string& out, std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) {
    out.append(s);
    return;
  }
  out.push_back('"');
  for (char c : s) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
}

int parse_version(const json& v) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s == "1.0") return 10;
    if (s == "2" || s == "2.0") return 20;
    if (s == "3" || s == "3.0") return 30;
    return 11;
  }
  if (v.is_number()) {
    const double d = v.get<double>();
    return d < 1.05 ? 10 : (d < 1.95 ? 11 : static_cast<int>(d * 10));
  }
  return 11;
}

}  // namespace

std::string feature_csv_header() {
  std::string h = "line,client";
  for (std::string_view name : FeatureVector::names()) {
    h.push_back(',');
    h.append(name);
  }
  return h;
}

ExtractStats extract_features(std::istream& log, std::ostream& csv) {
  ExtractStats stats;
  // No eviction while replaying a log of up to ~1M clients; memory grows only as clients appear.
  BehaviourTable::Options options;
  options.max_clients = 1 << 20;
  options.max_blocks = 1 << 18;
  BehaviourTable table(options);
  csv << feature_csv_header() << '\n';

  std::string line, row;
  std::vector<HeaderField> headers;
  auto skip = [&](const std::string& why) {
    ++stats.skipped;
    if (stats.first_error.empty()) {
      stats.first_error = "line " + std::to_string(stats.lines) + ": " + why;
    }
  };
  while (std::getline(log, line)) {
    ++stats.lines;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json rec = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (rec.is_discarded()) {
      skip("not valid JSON");
      continue;
    }
    if (!rec.is_object()) {
      skip("not a JSON object");
      continue;
    }
    const auto ts = rec.find("ts");
    const auto ip = rec.find("ip");
    const auto method = rec.find("method");
    const auto target = rec.find("target");
    if (ts == rec.end() || !ts->is_number()) {
      skip("missing or non-numeric \"ts\"");
      continue;
    }
    if (ip == rec.end() || !ip->is_string()) {
      skip("missing \"ip\"");
      continue;
    }
    if (method == rec.end() || !method->is_string() || target == rec.end() ||
        !target->is_string()) {
      skip("missing \"method\" or \"target\"");
      continue;
    }
    const std::string& ip_text = ip->get_ref<const std::string&>();
    const auto address = IpAddress::parse(ip_text);
    if (!address) {
      skip("unparsable \"ip\" " + ip_text);
      continue;
    }

    headers.clear();
    bool bad_headers = false;
    if (const auto h = rec.find("headers"); h != rec.end() && h->is_array()) {
      for (const json& pair : *h) {
        if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string() || !pair[1].is_string()) {
          bad_headers = true;
          break;
        }
        headers.push_back({pair[0].get_ref<const std::string&>(),
                           pair[1].get_ref<const std::string&>()});
      }
    }
    if (bad_headers) {
      skip("\"headers\" is not a list of [name, value] pairs");
      continue;
    }
    int status = -1;
    if (const auto s = rec.find("status"); s != rec.end() && s->is_number_integer()) {
      status = s->get<int>();
    }
    const double seconds = ts->get<double>();
    const double whole = std::floor(seconds);
    const Nanos now = static_cast<Nanos>(whole) * 1'000'000'000 +
                      static_cast<Nanos>(std::llround((seconds - whole) * 1e9));

    RequestView view;
    view.method = method->get_ref<const std::string&>();
    view.target = target->get_ref<const std::string&>();
    if (const auto v = rec.find("version"); v != rec.end()) view.version = parse_version(*v);
    view.headers = headers;
    view.client_ip = *address;
    if (const auto peer = rec.find("peer"); peer != rec.end() && peer->is_string()) {
      view.peer_ip = IpAddress::parse(peer->get_ref<const std::string&>()).value_or(*address);
    } else {
      view.peer_ip = *address;
    }
    view.now = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::nanoseconds(now)));

    const FeatureVector v = table.update(view, status, now);
    row.clear();
    row.append(std::to_string(stats.lines));
    row.push_back(',');
    append_csv_field(row, ip_text);
    for (double x : v.values) {
      row.push_back(',');
      append_number(row, x);
    }
    row.push_back('\n');
    csv << row;
    ++stats.rows;
  }
  return stats;
}

}  // namespace crawlgate
