// The YAML configuration (docs/config.md): server settings, classes and ordered rules, loaded
// strictly — unknown keys, duplicate keys and wrong types are errors carrying file:line.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crawlgate/rules/ip_address.h"
#include "crawlgate/rules/settings.h"

namespace crawlgate {

struct SourceLocation {
  std::string file;
  int line = 0;    // 1-based; 0 = unknown
  int column = 0;  // 1-based; 0 = unknown
};

struct ConfigError {
  std::string file;
  int line = 0;
  int column = 0;
  std::string message;
  // "file:line:col: message" (the position parts that are unknown are left out).
  std::string to_string() const;
};

enum class Action { kAllow, kDeny, kThrottle, kTarpit, kLog };

std::string_view action_name(Action action);
std::optional<Action> parse_action(std::string_view text);

struct DenyResponse {
  int status = 403;
  std::string body = "Forbidden\n";
};

// A rule may override only one of the two fields of its class's deny answer.
struct DenyOverride {
  std::optional<int> status;
  std::optional<std::string> body;
};

// A GCRA limit: `burst` requests at once, then one per 1/rate_per_second (docs/config.md,
// "Limits"). The loader only produces enabled limits (rate > 0, burst >= 1).
struct RateLimitConfig {
  double rate_per_second = 0;
  double burst = 0;
  SourceLocation where;  // the `limit:` / `class_limit:` map (the class's, when a rule inherits)
  bool enabled() const { return rate_per_second > 0; }
};

struct ClassConfig {
  std::string name;
  Action action = Action::kAllow;
  DenyResponse deny;
  std::string description;
  bool builtin = false;  // from the standard list and not overridden by the config
  SourceLocation where;
  // Only on throttle/tarpit/log classes (the loader refuses them on allow/deny).
  std::optional<RateLimitConfig> limit;        // per client key
  std::optional<RateLimitConfig> class_limit;  // all clients of the class together
  unsigned ipv4_prefix = 32;                   // client key: the address masked to this prefix
  unsigned ipv6_prefix = 64;
};

// The standard classes; a config may override any of them or add its own.
const std::vector<ClassConfig>& builtin_classes();

struct PatternConfig {
  enum class Kind { kRegex, kToken };
  Kind kind = Kind::kRegex;
  std::string text;  // the regex, or the literal token
  bool case_sensitive = false;
  SourceLocation where;
};

enum class ConditionKind {
  kAll,            // children all hold (a rule's own keys form an implicit kAll)
  kAny,            // at least one child holds
  kNot,            // exactly one child, which does not hold
  kUserAgent,      // any pattern matches the User-Agent value ("" when absent)
  kPath,           // any pattern matches the request target (path and query)
  kMethod,         // the method is one of `methods` (exact, case-sensitive)
  kHeaderMatches,  // header `header` is present and any pattern matches its first value
  kHeaderPresent,  // header `header` is present
  kHeaderAbsent,   // header `header` is absent
  kRemoteAddress,  // the client address lies in one of `cidrs`
};

struct Condition {
  ConditionKind kind = ConditionKind::kAll;
  std::string header;
  std::vector<PatternConfig> patterns;
  std::vector<std::string> methods;
  std::vector<Cidr> cidrs;
  std::vector<Condition> children;
  SourceLocation where;
};

struct RuleConfig {
  std::string name;
  std::string class_name;          // "" when the rule gives only an action
  Action action = Action::kAllow;  // resolved: the rule's own, else its class's
  bool enforce = true;             // false = shadow mode
  DenyResponse deny;               // resolved: the rule's override over its class's answer
  Condition condition;             // kAll of the rule's condition keys
  SourceLocation where;
  // Resolved: the rule's own limit, else its class's per-client limit when the rule's action is
  // throttle, tarpit or log; never set on allow/deny rules. The class's class_limit and prefixes
  // stay on the class (find_class(class_name)); a rule without a class keys clients by /32, /64.
  std::optional<RateLimitConfig> limit;
  std::optional<double> cost;  // > 0; unset = the first matching `costs` entry, else 1
};

// One entry of `costs:`: requests whose target matches `path` cost `cost` budget units.
struct CostConfig {
  // A regex on the request target (kind is always kRegex). `path.text` is the exact expression
  // the loader validated with hs_expression_info, with the flags of rule path patterns:
  // HS_FLAG_SINGLEMATCH, HS_FLAG_CASELESS unless path.case_sensitive, and HS_FLAG_ALLOWEMPTY
  // when `can_be_empty` (the regex matches the empty string, i.e. every target).
  PatternConfig path;
  double cost = 1;  // > 0
  bool can_be_empty = false;
  SourceLocation where;  // the list entry
};

// `behaviour:` — the in-process model that scores clients no decisive rule classified
// (docs/model.md). Scores at or above a threshold give the client that threshold's class, whose
// action and limits then apply like a rule's.
struct BehaviourThreshold {
  double min_score = 1;
  std::string class_name;
  SourceLocation where;
};

struct BehaviourConfig {
  bool enabled = false;
  std::string model_path;  // resolved against the directory of the file that names it
  SourceLocation model_where;
  std::vector<BehaviourThreshold> thresholds;  // highest min_score first
  bool enforce = true;                         // false: score, log and count, but let through
  bool score_claimed_bots = true;  // also score clients whose rule only claims search/archive
  std::size_t table_size = 200'000;  // tracked clients (address blocks get a quarter)
};

struct Config {
  ServerSettings server;
  BehaviourConfig behaviour;
  std::vector<ClassConfig> classes;  // builtins first (standard order), then the config's own
  std::vector<RuleConfig> rules;     // in evaluation order, includes expanded in place
  std::vector<CostConfig> costs;     // first match wins; includes expanded in place, like rules
  std::vector<std::string> files;    // every file read, main file first

  const ClassConfig* find_class(std::string_view name) const;
};

struct LoadResult {
  std::shared_ptr<const Config> config;
  std::vector<ConfigError> errors;
  bool ok() const { return errors.empty() && config; }
};

// Reads `path` and its includes from disk.
LoadResult load_config_file(const std::string& path);

// For the embedded default config: `files` maps a file name to its text; includes resolve in that
// map (globs too), relative to the directory part of the including file's name.
LoadResult load_config_embedded(const std::string& main_file,
                                const std::map<std::string, std::string>& files);

// Parsers shared with command-line flags. Each returns false and fills `error` on bad input.
// "250ms", "10s", "5m", "1h", or a plain (possibly fractional) number of seconds.
bool parse_duration(std::string_view text, Millis& out, std::string& error);
// "16KiB", "100MiB", "1GiB", or a plain number of bytes.
bool parse_size(std::string_view text, std::uint64_t& out, std::string& error);
// "10/s", "30/m", "100/h", "1000/d", or a plain number per second; must be above zero.
bool parse_rate(std::string_view text, double& per_second, std::string& error);

}  // namespace crawlgate
