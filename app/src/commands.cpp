#include "crawlgate/app/commands.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

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

int run_command(const std::string& config_path, const Overrides& overrides) {
  BuildResult built = build_from_config(config_path, overrides, 1);
  if (!built.snapshot) {
    for (const std::string& error : built.errors) std::fprintf(stderr, "%s\n", error.c_str());
    std::fprintf(stderr, "crawlgate: %zu error(s) in %s; not started\n", built.errors.size(),
                 describe_source(config_path).c_str());
    return 2;
  }
  const ServerSettings& settings = built.snapshot->settings;
  proxy::Server server(built.snapshot);
  server.set_reload_handler([&server, config_path, overrides](bool& ok) {
    BuildResult next = build_from_config(config_path, overrides, server.next_generation());
    if (!next.snapshot) {
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
  LoadResult loaded = load_configuration(config_path);
  if (!loaded.ok()) {
    for (const ConfigError& error : loaded.errors) {
      std::fprintf(stderr, "%s\n", error.to_string().c_str());
    }
    std::fprintf(stderr, "%s: %zu error(s)\n", describe_source(config_path).c_str(),
                 loaded.errors.size());
    return 1;
  }
  const Config& config = *loaded.config;
  std::printf("%s: OK (%zu file(s), %zu classes, %zu rules)\n",
              describe_source(config_path).c_str(), config.files.size(), config.classes.size(),
              config.rules.size());
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

BuildResult build_from_config(const std::string& path, const Overrides& overrides,
                              std::uint64_t generation) {
  BuildResult result;
  LoadResult loaded = load_configuration(path);
  if (!loaded.ok()) {
    for (const ConfigError& error : loaded.errors) result.errors.push_back(error.to_string());
    return result;
  }
  ServerSettings settings = loaded.config->server;
  if (auto error = apply_overrides(overrides, settings)) {
    result.errors.push_back(*error);
    return result;
  }
  result.snapshot = proxy::build_snapshot(settings, generation, describe_source(path));
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

  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e);
  }
  if (run->parsed()) return run_command(config_path, overrides);
  if (check->parsed()) return check_command(check_path);
  return 0;
}

}  // namespace crawlgate::app
