// Helpers shared by the rules tests: temporary config trees and hand-made requests.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "crawlgate/rules/config.h"
#include "crawlgate/rules/request_view.h"
#include "crawlgate/rules/rule_set.h"

namespace crawlgate::testing {

// A directory under the system temp dir, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::random_device random;
    path_ = std::filesystem::temp_directory_path() /
            ("crawlgate-rules-test-" + std::to_string(random()) + std::to_string(random()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Writes `text` to `name` (relative, may contain directories) and returns the full path.
  std::string write(const std::string& name, const std::string& text) const {
    std::filesystem::path file = path_ / name;
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file, std::ios::binary) << text;
    return file.string();
  }
  std::string path(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline LoadResult load_text(const std::string& text) {
  return load_config_embedded("main.yaml", {{"main.yaml", text}});
}

// All error messages joined, for failure output.
inline std::string describe_errors(const std::vector<ConfigError>& errors) {
  std::string out;
  for (const ConfigError& error : errors) out += "  " + error.to_string() + "\n";
  return out;
}

// Loads and compiles `text`; fails the test on any error.
inline std::shared_ptr<const RuleSet> compile_text(const std::string& text) {
  LoadResult loaded = load_text(text);
  EXPECT_TRUE(loaded.ok()) << describe_errors(loaded.errors);
  if (!loaded.ok()) return nullptr;
  CompileResult compiled = RuleSet::compile(*loaded.config);
  EXPECT_TRUE(compiled.ok()) << describe_errors(compiled.errors);
  return compiled.rule_set;
}

// Load and compile errors of `text`, in order.
inline std::vector<ConfigError> errors_of(const std::string& text) {
  LoadResult loaded = load_text(text);
  if (!loaded.ok()) return loaded.errors;
  return RuleSet::compile(*loaded.config).errors;
}

// A request that owns its strings, viewed as a RequestView.
struct Request {
  std::string method = "GET";
  std::string target = "/";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string client_ip = "192.0.2.10";

  Request& ua(std::string value) {
    headers.emplace_back("User-Agent", std::move(value));
    return *this;
  }
  Request& header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  Request& path(std::string value) {
    target = std::move(value);
    return *this;
  }
  Request& ip(std::string value) {
    client_ip = std::move(value);
    return *this;
  }
  Request& verb(std::string value) {
    method = std::move(value);
    return *this;
  }

  RequestView view() {
    fields_.clear();
    for (const auto& [name, value] : headers) fields_.push_back({name, value});
    RequestView view;
    view.method = method;
    view.target = target;
    view.headers = fields_;
    auto address = IpAddress::parse(client_ip);
    EXPECT_TRUE(address.has_value()) << client_ip;
    view.client_ip = address.value_or(IpAddress{});
    view.peer_ip = view.client_ip;
    return view;
  }

 private:
  std::vector<HeaderField> fields_;
};

// The name of the winning rule, "" when none matched.
inline std::string winner(const RuleSet& rules, Request request) {
  MatchScratch scratch;
  Decision decision = rules.evaluate(request.view(), scratch);
  return decision.matched() ? std::string(decision.rule_name) : std::string();
}

}  // namespace crawlgate::testing
