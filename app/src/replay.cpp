// `crawlgate replay`: a log through the proxy's own stages (rules, features, model, limits),
// offline and in the log's own time: the client table and the behaviour table run on a clock set
// from each record's timestamp, so rates, budgets and Retry-After are what the proxy would have
// computed had the traffic come through it.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "crawlgate/app/commands.h"
#include "crawlgate/classifier/access_log_reader.h"
#include "crawlgate/classifier/features.h"
#include "crawlgate/classifier/model.h"

namespace crawlgate::app {
namespace {

enum Outcome : std::size_t { kAllow, kDeny, kThrottle, kTarpit, kOutcomes };
constexpr const char* kOutcomeNames[kOutcomes] = {"allow", "deny", "throttle", "tarpit"};

struct Counts {
  std::size_t requests = 0;
  std::size_t by_outcome[kOutcomes] = {};
  void add(Outcome outcome) {
    ++requests;
    ++by_outcome[outcome];
  }
  std::size_t refused() const { return requests - by_outcome[kAllow]; }
};

struct ClientCounts : Counts {
  std::string last_class;
};

// What the proxy would have done, in the words of the --decisions column.
Outcome outcome_of(proxy::StageVerdict verdict, const proxy::RequestContext& context) {
  if (verdict != proxy::StageVerdict::kRespond) return kAllow;
  if (context.answered_by == "limits") {
    return context.response && context.response->delay.count() > 0 ? kTarpit : kThrottle;
  }
  if (context.answered_by == "static") return kAllow;  // a fixed answer is nobody's punishment
  return kDeny;
}

std::string format_score(double score) {
  if (score < 0) return "-";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.4f", score);
  return buffer;
}

std::string format_duration(double seconds) {
  char buffer[64];
  if (seconds < 120) {
    std::snprintf(buffer, sizeof buffer, "%.1f s", seconds);
  } else if (seconds < 7200) {
    std::snprintf(buffer, sizeof buffer, "%.1f min", seconds / 60);
  } else {
    std::snprintf(buffer, sizeof buffer, "%.1f h", seconds / 3600);
  }
  return buffer;
}

// A one-line bar on stderr, redrawn at most every 200 ms: only for a terminal.
class ProgressBar {
 public:
  ProgressBar(bool enabled, std::uint64_t total_bytes)
      : enabled_(enabled && total_bytes > 0 && ::isatty(STDERR_FILENO)), total_(total_bytes) {}
  void update(std::uint64_t done_bytes, std::size_t lines) {
    if (!enabled_ || (lines & 1023) != 0) return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    double fraction = std::min(1.0, static_cast<double>(done_bytes) / total_);
    constexpr int kWidth = 40;
    int filled = static_cast<int>(fraction * kWidth);
    std::fprintf(stderr, "\r[%.*s%*s] %5.1f%%  %zu lines", filled,
                 "########################################", kWidth - filled, "",
                 fraction * 100, lines);
    drawn_ = true;
  }
  void finish() {
    if (drawn_) std::fprintf(stderr, "\r%*s\r", 72, "");
  }

 private:
  bool enabled_;
  std::uint64_t total_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

void print_counts_header(const char* first, int width) {
  std::printf("  %-*s %9s %9s %9s %9s %9s\n", width, first, "requests", "allow", "deny",
              "throttle", "tarpit");
}

void print_counts_row(const std::string& name, const Counts& counts, int width,
                      const std::string& extra = "") {
  std::printf("  %-*s %9zu %9zu %9zu %9zu %9zu%s\n", width, name.c_str(), counts.requests,
              counts.by_outcome[kAllow], counts.by_outcome[kDeny], counts.by_outcome[kThrottle],
              counts.by_outcome[kTarpit], extra.c_str());
}

template <typename Map>
std::vector<const typename Map::value_type*> top_rows(const Map& map, std::size_t top,
                                                      bool refused_first) {
  std::vector<const typename Map::value_type*> rows;
  rows.reserve(map.size());
  for (const auto& entry : map) rows.push_back(&entry);
  auto better = [refused_first](const auto* a, const auto* b) {
    if (refused_first && a->second.refused() != b->second.refused()) {
      return a->second.refused() > b->second.refused();
    }
    if (a->second.requests != b->second.requests) return a->second.requests > b->second.requests;
    return a->first < b->first;
  };
  std::size_t keep = std::min(top, rows.size());
  std::partial_sort(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(keep), rows.end(),
                    better);
  rows.resize(keep);
  return rows;
}

}  // namespace

int replay_command(const ReplayOptions& options) {
  std::optional<LogFormat> forced_format;
  if (options.format != "auto") {
    forced_format = log_format_from_name(options.format);
    if (!forced_format) {
      std::fprintf(stderr, "crawlgate replay: --format '%s' is not combined, jsonl or auto\n",
                   options.format.c_str());
      return 2;
    }
  }
  std::ifstream log(options.log_path, std::ios::binary);
  if (!log) {
    std::fprintf(stderr, "crawlgate replay: cannot open %s\n", options.log_path.c_str());
    return 2;
  }
  log.seekg(0, std::ios::end);
  const auto log_size = static_cast<std::uint64_t>(std::max<std::streamoff>(0, log.tellg()));
  log.seekg(0);

  // The log's time, not the wall clock: budgets refill and features decay as they would have.
  constexpr Nanos kClockStart = 1'000'000'000;
  ManualClock clock(kClockStart);
  std::shared_ptr<proxy::ThrottleState> state;
  BuildResult built =
      build_from_config(options.config_path, Overrides{}, 1, nullptr, &state, clock);
  if (!built.snapshot) {
    for (const std::string& error : built.errors) std::fprintf(stderr, "%s\n", error.c_str());
    return 2;
  }
  const proxy::Snapshot& snapshot = *built.snapshot;

  std::ofstream decisions;
  if (!options.decisions_path.empty()) {
    decisions.open(options.decisions_path, std::ios::binary | std::ios::trunc);
    if (!decisions) {
      std::fprintf(stderr, "crawlgate replay: cannot write %s\n",
                   options.decisions_path.c_str());
      return 2;
    }
  }

  std::optional<LogFormat> format = forced_format;
  Counts total;
  std::unordered_map<std::string, Counts> by_class, by_rule;
  std::unordered_map<std::string, ClientCounts> by_client;
  std::size_t lines = 0, errors = 0, out_of_order = 0;
  std::vector<std::string> first_errors;
  std::optional<double> first_ts;
  double last_ts = 0;
  Nanos clock_now = kClockStart;
  std::uint64_t bytes_read = 0;
  ProgressBar bar(options.progress, log_size);
  const auto started = std::chrono::steady_clock::now();

  std::string line, decision_line;
  LogRecord record;
  std::string error;
  std::vector<HeaderField> fields;
  while (std::getline(log, line)) {
    ++lines;
    bytes_read += line.size() + 1;
    bar.update(bytes_read, lines);
    bool blank = line.find_first_not_of(" \t\r") == std::string::npos;
    if (!format && !blank) format = detect_log_format(line);
    bool parsed = !blank && parse_log_line(*format, line, record, error);
    if (!parsed) {
      ++errors;
      if (first_errors.size() < 5) {
        first_errors.push_back("line " + std::to_string(lines) + ": " +
                               (blank ? std::string("blank line") : error));
      }
      if (decisions.is_open()) decisions << lines << "\t-\terror\t-\t-\n";
      continue;
    }

    if (!first_ts) first_ts = record.ts;
    // Logs written by several threads are ordered only roughly: time never runs backwards here.
    if (record.ts < last_ts) ++out_of_order;
    last_ts = std::max(last_ts, record.ts);
    Nanos at = kClockStart + static_cast<Nanos>((record.ts - *first_ts) * 1e9);
    clock_now = std::max(clock_now, at);
    clock.set(clock_now);

    fields.clear();
    for (const auto& [name, value] : record.headers) fields.push_back({name, value});
    RequestView request;
    request.method = record.method;
    request.target = record.target;
    request.version = record.version == 10 ? 10 : 11;
    request.headers = fields;
    request.client_ip = record.address;
    request.peer_ip = record.address;
    request.now = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::duration<double>(record.ts)));

    proxy::RequestContext context;
    context.request_id = "replay";
    proxy::StageVerdict verdict = proxy::run_pipeline_offline(snapshot, request, context);
    Outcome outcome = outcome_of(verdict, context);
    // The proxy tells the behaviour table each scored request's status when it is known: its own
    // answer, or the upstream's as logged.
    if (snapshot.behaviour && context.score >= 0) {
      int status = context.response ? context.response->status : record.status;
      if (status > 0) snapshot.behaviour->report_status(record.address, status);
    }

    std::string rule = context.rule;
    if (!context.enforced && !rule.empty()) rule = "shadow:" + rule;
    const std::string& traffic_class = context.traffic_class;
    total.add(outcome);
    by_class[traffic_class.empty() ? "-" : traffic_class].add(outcome);
    by_rule[rule.empty() ? "-" : rule].add(outcome);
    ClientCounts& client = by_client[record.ip];
    client.add(outcome);
    if (!traffic_class.empty()) client.last_class = traffic_class;

    if (decisions.is_open()) {
      decision_line.clear();
      decision_line.append(std::to_string(lines)).push_back('\t');
      decision_line.append(traffic_class.empty() ? "-" : traffic_class).push_back('\t');
      decision_line.append(kOutcomeNames[outcome]).push_back('\t');
      decision_line.append(format_score(context.score)).push_back('\t');
      decision_line.append(rule.empty() ? "-" : rule).push_back('\n');
      decisions << decision_line;
    }
  }
  bar.finish();
  if (decisions.is_open()) {
    decisions.flush();
    if (!decisions) {
      std::fprintf(stderr, "crawlgate replay: writing %s failed\n",
                   options.decisions_path.c_str());
      return 2;
    }
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  std::printf("replay: %s (%s)\n", options.log_path.c_str(),
              !format ? "empty" : (*format == LogFormat::kJsonLines ? "jsonl" : "combined"));
  std::printf("config: %s (%zu rules, %zu patterns; behaviour model %s)%s\n",
              snapshot.source.c_str(), snapshot.rules ? snapshot.rules->rule_count() : 0,
              snapshot.rules ? snapshot.rules->pattern_count() : 0,
              snapshot.model ? "on" : "off",
              snapshot.settings.redis.enabled ? "; redis ignored: limits are local offline" : "");
  std::printf("lines: %zu  requests: %zu  errors: %zu  log time: %s  replayed in %.1f s "
              "(%.0f lines/s)\n",
              lines, total.requests, errors,
              format_duration(first_ts ? last_ts - *first_ts : 0).c_str(), elapsed,
              elapsed > 0 ? lines / elapsed : 0.0);
  if (format == LogFormat::kCombined && snapshot.model) {
    std::printf("note: a combined log has no headers but Referer and User-Agent, so to the model "
                "every browser\n      lacks the headers it always sends: more people score high "
                "than through the proxy.\n      Compare refusals, not flags (README, \"replay\").\n");
  }
  if (out_of_order > 0) {
    std::printf("note: %zu records were older than one before them; time was held still\n",
                out_of_order);
  }
  for (const std::string& message : first_errors) std::printf("error: %s\n", message.c_str());
  if (errors > first_errors.size()) {
    std::printf("error: ... and %zu more\n", errors - first_errors.size());
  }
  if (total.requests == 0) return 1;

  std::printf("\nby class:\n");
  print_counts_header("class", 24);
  for (const auto* row : top_rows(by_class, by_class.size(), false)) {
    print_counts_row(row->first, row->second, 24);
  }
  print_counts_row("total", total, 24);

  std::printf("\nby rule (top %zu of %zu by requests):\n", std::min(options.top, by_rule.size()),
              by_rule.size());
  print_counts_header("rule", 40);
  for (const auto* row : top_rows(by_rule, options.top, false)) {
    print_counts_row(row->first, row->second, 40);
  }

  std::printf("\nby client (top %zu of %zu by refused requests, then requests):\n",
              std::min(options.top, by_client.size()), by_client.size());
  print_counts_header("client", 40);
  for (const auto* row : top_rows(by_client, options.top, true)) {
    print_counts_row(row->first, row->second, 40,
                     "  " + (row->second.last_class.empty() ? "-" : row->second.last_class));
  }
  return 0;
}

}  // namespace crawlgate::app
