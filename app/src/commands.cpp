#include "crawlgate/app/commands.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "crawlgate/classifier/model.h"
#include "crawlgate/proxy/server.h"

#ifndef CRAWLGATE_VERSION
#define CRAWLGATE_VERSION "0.0.0"
#endif

namespace crawlgate::app {
namespace {

constexpr const char* kEmbeddedMain = "crawlgate.yaml";

std::string describe_source(const std::string& path) {
  return path.empty() ? std::string("(embedded default config)") : path;
}

void register_throttle_metrics(metrics::Metrics& metrics, proxy::ThrottleState& state) {
  using prometheus::MetricType;
  ClientTable& clients = state.clients();
  metrics.add_pulled("crawlgate_client_table_entries", "Tracked client keys", MetricType::Gauge,
                     {{{}, [&clients] { return double(clients.size()); }}});
  metrics.add_pulled("crawlgate_client_table_capacity", "The client table's hard cap",
                     MetricType::Gauge, {{{}, [&clients] { return double(clients.capacity()); }}});
  metrics.add_pulled("crawlgate_client_table_bytes", "Memory the client table allocated",
                     MetricType::Gauge,
                     {{{}, [&clients] { return double(clients.memory_bytes()); }}});
  metrics.add_pulled("crawlgate_client_table_evictions_total",
                     "Entries evicted to stay under the cap", MetricType::Counter,
                     {{{}, [&clients] { return double(clients.evictions()); }}});
  metrics.add_pulled("crawlgate_tarpit_active", "Answers being held now", MetricType::Gauge,
                     {{{}, [&state] { return double(state.held()); }}});
}

int run_command(const std::string& config_path, const Overrides& overrides) {
  auto metrics = std::make_shared<metrics::Metrics>(CRAWLGATE_VERSION);
  auto throttle = std::make_shared<std::shared_ptr<proxy::ThrottleState>>();
  BuildResult built = build_from_config(config_path, overrides, 1, metrics.get(), throttle.get());
  if (!built.snapshot) {
    for (const std::string& error : built.errors) std::fprintf(stderr, "%s\n", error.c_str());
    std::fprintf(stderr, "crawlgate: %zu error(s) in %s; not started\n", built.errors.size(),
                 describe_source(config_path).c_str());
    return 2;
  }
  const ServerSettings& settings = built.snapshot->settings;
  proxy::Server server(built.snapshot);
  server.set_metrics(metrics);
  register_throttle_metrics(*metrics, **throttle);
  server.set_throttle_state(*throttle);
  server.set_reload_handler([&server, config_path, overrides, metrics, throttle](bool& ok) {
    BuildResult next = build_from_config(config_path, overrides, server.next_generation(),
                                         metrics.get(), throttle.get());
    if (!next.snapshot) {
      metrics->on_reload_failed();
      ok = false;
      std::string message;
      for (const std::string& error : next.errors) message.append("\n  ").append(error);
      return message;
    }
    const ServerSettings& now = server.snapshot()->settings;
    std::string note;
    if (!(next.snapshot->settings.listen.to_string() == now.listen.to_string()) ||
        !(next.snapshot->settings.admin.to_string() == now.admin.to_string()) ||
        next.snapshot->settings.threads != now.threads ||
        next.snapshot->settings.access_log.path != now.access_log.path) {
      note = " (listen, admin, threads and access_log.path take effect on restart)";
    }
    server.publish(next.snapshot);
    ok = true;
    return "config generation " + std::to_string(next.snapshot->generation) + " from " +
           describe_source(config_path) + note;
  });
  try {
    server.start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "crawlgate: %s\n", e.what());
    return 1;
  }
  server.handle_signals();
  std::fprintf(stderr,
               "crawlgate %s: listening on %s, upstream http://%s, admin %s, config %s\n",
               CRAWLGATE_VERSION, settings.listen.to_string().c_str(),
               settings.upstream.address.to_string().c_str(), settings.admin.to_string().c_str(),
               describe_source(config_path).c_str());
  server.wait();
  std::fprintf(stderr, "crawlgate: stopped\n");
  return 0;
}

int check_command(const std::string& config_path) {
  CompiledConfig compiled = compile_configuration(config_path);
  if (!compiled.ok()) {
    for (const ConfigError& error : compiled.errors) {
      std::fprintf(stderr, "%s\n", error.to_string().c_str());
    }
    std::fprintf(stderr, "%s: %zu error(s)\n", describe_source(config_path).c_str(),
                 compiled.errors.size());
    return 1;
  }
  const Config& config = *compiled.config;
  std::printf("%s: OK (%zu file(s), %zu classes, %zu rules, %zu patterns)\n",
              describe_source(config_path).c_str(), config.files.size(), config.classes.size(),
              compiled.rules->rule_count(), compiled.rules->pattern_count());
  return 0;
}

struct ExplainOptions {
  std::string config_path;
  std::string user_agent;
  std::string path = "/";
  std::string method = "GET";
  std::string ip = "192.0.2.1";
  std::vector<std::string> headers;
};

int explain_command(const ExplainOptions& options) {
  // The same stages as the proxy, limits and behaviour included, over a fresh client state: the
  // request is explained as a client's first.
  std::shared_ptr<proxy::ThrottleState> state;
  BuildResult built = build_from_config(options.config_path, Overrides{}, 1, nullptr, &state);
  if (!built.snapshot) {
    for (const std::string& error : built.errors) std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  const proxy::Snapshot& snapshot = *built.snapshot;
  auto client = IpAddress::parse(options.ip);
  if (!client) {
    std::fprintf(stderr, "crawlgate explain: --ip '%s' is not an IP address\n",
                 options.ip.c_str());
    return 2;
  }
  // The request as the proxy would see it: Host first, then the User-Agent, then the rest.
  std::vector<std::string> names, values;
  std::vector<HeaderField> fields;
  names.push_back("Host");
  values.push_back("explain.invalid");
  if (!options.user_agent.empty()) {
    names.push_back("User-Agent");
    values.push_back(options.user_agent);
  }
  for (const std::string& header : options.headers) {
    std::size_t colon = header.find(':');
    if (colon == std::string::npos || colon == 0) {
      std::fprintf(stderr, "crawlgate explain: --header '%s' is not 'Name: value'\n",
                   header.c_str());
      return 2;
    }
    std::string value = header.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    names.push_back(header.substr(0, colon));
    values.push_back(value);
  }
  for (std::size_t i = 0; i < names.size(); ++i) fields.push_back({names[i], values[i]});
  RequestView request;
  request.method = options.method;
  request.target = options.path;
  request.headers = fields;
  request.client_ip = *client;
  request.peer_ip = *client;
  request.now = std::chrono::system_clock::now();

  std::printf("request: %s %s from %s\n", options.method.c_str(), options.path.c_str(),
              client->to_string().c_str());
  for (const HeaderField& field : fields) {
    std::printf("  %.*s: %.*s\n", static_cast<int>(field.name.size()), field.name.data(),
                static_cast<int>(field.value.size()), field.value.data());
  }
  std::printf("config: %s (generation %llu, %zu rules, %zu patterns)\n",
              snapshot.source.c_str(), static_cast<unsigned long long>(snapshot.generation),
              snapshot.rules ? snapshot.rules->rule_count() : 0,
              snapshot.rules ? snapshot.rules->pattern_count() : 0);
  std::vector<RuleMatch> matches;
  if (snapshot.rules) matches = snapshot.rules->explain(request);
  if (matches.empty()) {
    std::printf("matching rules: none\n");
  } else {
    std::printf("matching rules, in order (the first enforced one decides):\n");
    for (const RuleMatch& match : matches) {
      const RuleConfig& rule = snapshot.config->rules[match.rule_index];
      std::printf("  %-40.*s class=%-18.*s action=%-8.*s %s  %s:%d\n",
                  static_cast<int>(match.rule_name.size()), match.rule_name.data(),
                  static_cast<int>(match.class_name.size()), match.class_name.data(),
                  static_cast<int>(action_name(match.action).size()),
                  action_name(match.action).data(), match.enforced ? "enforced" : "shadow",
                  rule.where.file.c_str(), rule.where.line);
    }
  }
  proxy::RequestContext context;
  context.request_id = "explain";
  context.explain = true;
  proxy::StageVerdict verdict = proxy::run_pipeline_offline(snapshot, request, context);
  std::printf("decision: class=%s rule=%s action=%s enforced=%s -> %s\n",
              context.traffic_class.empty() ? "-" : context.traffic_class.c_str(),
              context.rule.empty() ? "-" : context.rule.c_str(),
              context.action.empty() ? "allow" : context.action.c_str(),
              context.enforced ? "yes" : "no (shadow)",
              verdict == proxy::StageVerdict::kRespond
                  ? ("answered by crawlgate with " + std::to_string(context.response->status) +
                     " (" + context.answered_by + ")")
                        .c_str()
                  : "forwarded to the upstream");
  if (!context.shadow_rule.empty()) {
    std::printf("shadow rule also matched: %s\n", context.shadow_rule.c_str());
  }
  if (context.score >= 0) {
    std::printf("behaviour score: %.4f (as this client's first request)\n", context.score);
    if (!context.top_features.empty()) {
      std::printf("features pushing it up (raw-score units): %s\n", context.top_features.c_str());
    }
  }
  return 0;
}

}  // namespace

LoadResult load_configuration(const std::string& path) {
  if (path.empty()) return load_config_embedded(kEmbeddedMain, embedded_config_files());
  return load_config_file(path);
}

std::optional<std::string> apply_overrides(const Overrides& overrides, ServerSettings& settings) {
  std::string error;
  if (overrides.listen && !HostPort::parse(*overrides.listen, settings.listen, error)) {
    return "--listen: " + error;
  }
  if (overrides.admin && !HostPort::parse(*overrides.admin, settings.admin, error)) {
    return "--admin: " + error;
  }
  if (overrides.upstream &&
      !UpstreamSettings::parse_url(*overrides.upstream, settings.upstream.address, error)) {
    return "--upstream: " + error;
  }
  if (!overrides.trusted_proxies.empty()) {
    settings.trusted_proxies.clear();
    for (const std::string& text : overrides.trusted_proxies) {
      auto cidr = Cidr::parse(text, &error);
      if (!cidr) return "--trusted-proxy: " + error;
      settings.trusted_proxies.push_back(*cidr);
    }
  }
  if (overrides.threads) settings.threads = *overrides.threads;
  return std::nullopt;
}

CompiledConfig compile_configuration(const std::string& path) {
  CompiledConfig result;
  LoadResult loaded = load_configuration(path);
  result.errors = std::move(loaded.errors);
  result.config = std::move(loaded.config);
  if (!result.errors.empty() || !result.config) return result;
  CompileResult compiled = RuleSet::compile(*result.config);
  result.errors = std::move(compiled.errors);
  result.rules = std::move(compiled.rule_set);
  if (result.config->behaviour.enabled) {
    // A model that does not load fails the whole config: a reload keeps the old model too.
    const BehaviourConfig& behaviour = result.config->behaviour;
    // The embedded config names the embedded model; a config file names a file.
    const auto& embedded = embedded_config_files();
    auto in_binary = path.empty() ? embedded.find(behaviour.model_path) : embedded.end();
    auto loaded = in_binary != embedded.end() ? Model::parse(in_binary->second)
                                              : Model::load_file(behaviour.model_path);
    if (auto* error = std::get_if<std::string>(&loaded)) {
      result.errors.push_back(ConfigError{behaviour.model_where.file, behaviour.model_where.line,
                                          behaviour.model_where.column,
                                          "behaviour.model " + behaviour.model_path + ": " +
                                              *error});
    } else {
      result.model = std::get<std::shared_ptr<const Model>>(loaded);
    }
  }
  return result;
}

BuildResult build_from_config(const std::string& path, const Overrides& overrides,
                              std::uint64_t generation, metrics::Metrics* metrics,
                              std::shared_ptr<proxy::ThrottleState>* throttle,
                              const Clock& clock) {
  BuildResult result;
  CompiledConfig compiled = compile_configuration(path);
  if (!compiled.ok()) {
    for (const ConfigError& error : compiled.errors) result.errors.push_back(error.to_string());
    if (result.errors.empty()) result.errors.push_back(describe_source(path) + ": not loaded");
    return result;
  }
  ServerSettings settings = compiled.config->server;
  if (auto error = apply_overrides(overrides, settings)) {
    result.errors.push_back(*error);
    return result;
  }
  proxy::SnapshotParts parts;
  parts.settings = settings;
  parts.generation = generation;
  parts.source = describe_source(path);
  parts.config = compiled.config;
  parts.rules = compiled.rules;
  parts.metrics = metrics;
  parts.model = compiled.model;
  if (throttle) {
    // The client table outlives reloads; its size is fixed by the first config.
    if (!*throttle) {
      *throttle = std::make_shared<proxy::ThrottleState>(settings.throttle, clock);
    }
    parts.throttle = *throttle;
  }
  std::string error;
  result.snapshot = proxy::build_snapshot(std::move(parts), &error);
  if (!result.snapshot) {
    result.errors.push_back(describe_source(path) + ": " + error);
    return result;
  }
  if (metrics) {
    metrics->on_config_loaded(generation, compiled.rules->rule_count(),
                              compiled.rules->pattern_count());
  }
  return result;
}

int main(int argc, char** argv) {
  CLI::App cli{
      "crawlgate: a reverse proxy that recognises AI crawlers and allows, denies, throttles or "
      "tarpits them, in front of your site.\n\nWithout --config, the embedded default config is "
      "used (listen 127.0.0.1:8080, upstream http://127.0.0.1:8081). See docs/config.md.",
      "crawlgate"};
  cli.set_version_flag("-V,--version", std::string("crawlgate ") + CRAWLGATE_VERSION);
  cli.require_subcommand(1);

  std::string config_path;
  Overrides overrides;
  CLI::App* run = cli.add_subcommand("run", "Run the proxy (SIGHUP reloads, SIGUSR1 reopens logs)");
  run->add_option("-c,--config", config_path, "YAML config file (default: embedded config)")
      ->check(CLI::ExistingFile);
  run->add_option("--listen", overrides.listen, "Public listener HOST:PORT (overrides `listen`)");
  run->add_option("--upstream", overrides.upstream,
                  "Protected site http://HOST:PORT (overrides `upstream`)");
  run->add_option("--admin", overrides.admin,
                  "Admin listener HOST:PORT for /metrics, /healthz, /readyz, POST /-/reload");
  run->add_option("--trusted-proxy", overrides.trusted_proxies,
                  "CIDR whose X-Forwarded-For is believed; repeatable (replaces "
                  "`trusted_proxies`)");
  run->add_option("--threads", overrides.threads, "I/O threads (0 = one per core)");

  std::string check_path;
  CLI::App* check = cli.add_subcommand(
      "check", "Validate a config: exit 0, or print every error with file:line and exit 1");
  check->add_option("-c,--config", check_path, "YAML config file (default: embedded config)");

  ExplainOptions explain_options;
  CLI::App* explain = cli.add_subcommand(
      "explain", "Show which rules match a request, and what crawlgate would do with it");
  explain->add_option("-c,--config", explain_options.config_path,
                      "YAML config file (default: embedded config)");
  explain->add_option("--ua", explain_options.user_agent, "User-Agent of the request");
  explain->add_option("--path", explain_options.path, "Request target (default /)");
  explain->add_option("--method", explain_options.method, "Method (default GET)");
  explain->add_option("--ip", explain_options.ip, "Client address (default 192.0.2.1)");
  explain->add_option("--header", explain_options.headers,
                      "Another header, 'Name: value'; repeatable");

  ReplayOptions replay_options;
  CLI::App* replay = cli.add_subcommand(
      "replay",
      "Run an access log through the rules, features, model and limits offline, in the log's own "
      "time, and print what crawlgate would have done per class, rule and client");
  replay->add_option("log", replay_options.log_path, "Access log (JSON lines or combined)")
      ->required()
      ->check(CLI::ExistingFile);
  replay->add_option("-c,--config", replay_options.config_path,
                     "YAML config file (default: embedded config)")
      ->check(CLI::ExistingFile);
  replay->add_option("--format", replay_options.format,
                     "combined, jsonl, or auto (the first line decides; default)")
      ->check(CLI::IsMember({"auto", "combined", "jsonl"}));
  replay->add_option("--decisions", replay_options.decisions_path,
                     "Write one line per log line: line<TAB>class<TAB>action<TAB>score<TAB>rule");
  replay->add_option("--top", replay_options.top, "Rows per summary table (default 10)");
  bool no_progress = false;
  replay->add_flag("--no-progress", no_progress,
                   "No progress bar (it is drawn only when stderr is a terminal)");

  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e);
  }
  if (run->parsed()) return run_command(config_path, overrides);
  if (check->parsed()) return check_command(check_path);
  if (explain->parsed()) return explain_command(explain_options);
  if (replay->parsed()) {
    replay_options.progress = !no_progress;
    return replay_command(replay_options);
  }
  return 0;
}

}  // namespace crawlgate::app
