#include "crawlgate/rules/config.h"

#include <fnmatch.h>
#include <glob.h>
#include <hs/hs.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <set>
#include <sstream>
#include <utility>

namespace crawlgate {

std::string ConfigError::to_string() const {
  std::string out = file.empty() ? "<config>" : file;
  if (line > 0) {
    out += ":" + std::to_string(line);
    if (column > 0) out += ":" + std::to_string(column);
  }
  return out + ": " + message;
}

std::string_view action_name(Action action) {
  switch (action) {
    case Action::kAllow:
      return "allow";
    case Action::kDeny:
      return "deny";
    case Action::kThrottle:
      return "throttle";
    case Action::kTarpit:
      return "tarpit";
    case Action::kLog:
      return "log";
  }
  return "allow";
}

std::optional<Action> parse_action(std::string_view text) {
  for (Action action :
       {Action::kAllow, Action::kDeny, Action::kThrottle, Action::kTarpit, Action::kLog}) {
    if (text == action_name(action)) return action;
  }
  return std::nullopt;
}

const std::vector<ClassConfig>& builtin_classes() {
  static const std::vector<ClassConfig> classes = [] {
    struct Entry {
      const char* name;
      Action action;
      const char* description;
    };
    const Entry entries[] = {
        {"ai_training", Action::kDeny, "crawlers collecting model training data"},
        {"ai_search", Action::kThrottle, "AI search engines indexing for answers"},
        {"ai_assistant", Action::kThrottle, "fetches made live on behalf of an AI chat user"},
        {"ai_agent", Action::kThrottle, "autonomous AI agents browsing the site"},
        {"ai_data", Action::kDeny, "data brokers reselling crawled content to AI companies"},
        {"ai_stealth", Action::kAllow, "AI crawlers disguised as browsers"},
        {"search_engine", Action::kAllow, "classic search engine crawlers"},
        {"archiver", Action::kAllow, "web archives"},
        {"social_preview", Action::kAllow, "link preview fetchers of chat and social apps"},
        {"feed_reader", Action::kAllow, "RSS/Atom readers"},
        {"monitor", Action::kAllow, "uptime and performance monitors"},
        {"seo", Action::kAllow, "SEO and marketing crawlers"},
        {"scanner", Action::kAllow, "security and vulnerability scanners"},
        {"http_library", Action::kAllow, "generic HTTP client libraries and tools"},
        {"browser_automation", Action::kAllow, "headless browsers and automation frameworks"},
        {"human", Action::kAllow, "people using browsers"},
    };
    std::vector<ClassConfig> out;
    for (const Entry& entry : entries) {
      ClassConfig config;
      config.name = entry.name;
      config.action = entry.action;
      config.description = entry.description;
      config.builtin = true;
      out.push_back(std::move(config));
    }
    return out;
  }();
  return classes;
}

const ClassConfig* Config::find_class(std::string_view name) const {
  for (const ClassConfig& config : classes) {
    if (config.name == name) return &config;
  }
  return nullptr;
}

bool parse_duration(std::string_view text, Millis& out, std::string& error) {
  auto fail = [&] {
    error = "'" + std::string(text) + "' is not a duration (e.g. 250ms, 10s, 5m, 1h, or seconds)";
    return false;
  };
  std::size_t unit_start = text.size();
  while (unit_start > 0 && std::isalpha(static_cast<unsigned char>(text[unit_start - 1]))) {
    --unit_start;
  }
  std::string_view number = text.substr(0, unit_start);
  std::string_view unit = text.substr(unit_start);
  if (number.empty()) return fail();
  for (char c : number) {
    if (!(c >= '0' && c <= '9') && c != '.') return fail();
  }
  double value = 0;
  auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (ec != std::errc() || end != number.data() + number.size()) return fail();
  double factor = 0;
  if (unit.empty() || unit == "s") {
    factor = 1000;
  } else if (unit == "ms") {
    factor = 1;
  } else if (unit == "m") {
    factor = 60'000;
  } else if (unit == "h") {
    factor = 3'600'000;
  } else {
    error = "unknown duration unit '" + std::string(unit) + "' in '" + std::string(text) +
            "' (use ms, s, m or h)";
    return false;
  }
  double millis = value * factor;
  if (millis > 1e12) {
    error = "duration '" + std::string(text) + "' is too long";
    return false;
  }
  out = Millis(static_cast<Millis::rep>(std::llround(millis)));
  return true;
}

bool parse_size(std::string_view text, std::uint64_t& out, std::string& error) {
  std::size_t unit_start = 0;
  while (unit_start < text.size() && text[unit_start] >= '0' && text[unit_start] <= '9') {
    ++unit_start;
  }
  std::string_view number = text.substr(0, unit_start);
  std::string_view unit = text.substr(unit_start);
  if (number.empty()) {
    error = "'" + std::string(text) + "' is not a size (e.g. 16KiB, 100MiB, 1GiB, or bytes)";
    return false;
  }
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (ec != std::errc() || end != number.data() + number.size()) {
    error = "size '" + std::string(text) + "' is too large";
    return false;
  }
  unsigned shift = 0;
  if (unit.empty() || unit == "B") {
    shift = 0;
  } else if (unit == "KiB") {
    shift = 10;
  } else if (unit == "MiB") {
    shift = 20;
  } else if (unit == "GiB") {
    shift = 30;
  } else {
    error = "unknown size unit '" + std::string(unit) + "' in '" + std::string(text) +
            "' (use KiB, MiB, GiB, or a number of bytes)";
    return false;
  }
  if (shift > 0 && value > (UINT64_MAX >> shift)) {
    error = "size '" + std::string(text) + "' is too large";
    return false;
  }
  out = value << shift;
  return true;
}

namespace {

// A plain decimal ("10", "0.5", "-1"): no exponent, no inf/nan, no '+'.
bool parse_decimal(std::string_view text, double& out) {
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '-') digits.remove_prefix(1);
  if (digits.empty() || digits.front() == '.' || digits.back() == '.') return false;
  for (char c : digits) {
    if (!(c >= '0' && c <= '9') && c != '.') return false;
  }
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && std::isfinite(out);
}

}  // namespace

bool parse_rate(std::string_view text, double& per_second, std::string& error) {
  std::size_t slash = text.find('/');
  std::string_view number = text.substr(0, slash);
  std::string_view unit = slash == std::string_view::npos ? "s" : text.substr(slash + 1);
  double value = 0;
  if (!parse_decimal(number, value)) {
    error = "'" + std::string(text) +
            "' is not a rate (e.g. 10/s, 30/m, 100/h, 1000/d, or a number per second)";
    return false;
  }
  double seconds = 0;
  if (unit == "s") {
    seconds = 1;
  } else if (unit == "m") {
    seconds = 60;
  } else if (unit == "h") {
    seconds = 3600;
  } else if (unit == "d") {
    seconds = 86400;
  } else {
    error = "unknown rate unit '" + std::string(unit) + "' in '" + std::string(text) +
            "' (use s, m, h or d: 10/s, 30/m, 100/h, 1000/d)";
    return false;
  }
  if (value <= 0) {
    error = "rate '" + std::string(text) +
            "' must be above zero (to refuse a class, give it action: deny instead)";
    return false;
  }
  per_second = value / seconds;
  if (per_second > 1e9) {
    error = "rate '" + std::string(text) + "' is too high (at most 1000000000/s)";
    return false;
  }
  return true;
}

namespace {

using YAML::Node;

bool limits_apply(Action action) { return action != Action::kAllow && action != Action::kDeny; }

// "class 'x': limit has no effect: the action is deny; give the class action: throttle or ..."
std::string no_effect(const std::string& owner, const std::string& key, Action action,
                      const std::string& from) {
  std::string kind = owner.substr(0, owner.find(' '));
  return owner + ": " + key + " has no effect: the action is " + std::string(action_name(action)) +
         from + "; give the " + kind + " action: throttle or tarpit, or remove the " + key;
}

// Mirrors the checks that RuleSet::compile makes on rule patterns (rule_set.cpp).
std::string hyperscan_error(const std::string& expression, unsigned flags, bool& can_be_empty) {
  hs_expr_info_t* info = nullptr;
  hs_compile_error_t* error = nullptr;
  if (hs_expression_info(expression.c_str(), flags | HS_FLAG_ALLOWEMPTY, &info, &error) ==
      HS_SUCCESS) {
    can_be_empty = info->min_width == 0;
    std::free(info);
    return {};
  }
  std::string message = error && error->message ? error->message : "rejected by Hyperscan";
  if (error) hs_free_compile_error(error);
  std::string lower = message;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower.find("look") != std::string::npos || lower.find("backref") != std::string::npos ||
      lower.find("back-ref") != std::string::npos || lower.find("assert") != std::string::npos) {
    message +=
        " (lookaround and back-references are not supported: split the pattern into several "
        "costs entries)";
  }
  return message;
}

// Where the loader reads files: the disk, or the map of the embedded default config.
class FileSource {
 public:
  virtual ~FileSource() = default;
  virtual bool read(const std::string& path, std::string& text, std::string& error) = 0;
  // Sorted matches of a glob pattern.
  virtual std::vector<std::string> glob(const std::string& pattern) = 0;
  // A name that is equal for equal files, for loop detection.
  virtual std::string identity(const std::string& path) = 0;
};

class DiskSource : public FileSource {
 public:
  bool read(const std::string& path, std::string& text, std::string& error) override {
    std::error_code ignored;
    if (std::filesystem::is_directory(path, ignored)) {
      error = "is a directory (include a glob such as dir/*.yaml)";
      return false;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      error = "cannot open: " + std::string(std::strerror(errno));
      return false;
    }
    std::ostringstream buffer;
    buffer << in.rdbuf();
    text = buffer.str();
    return true;
  }
  std::vector<std::string> glob(const std::string& pattern) override {
    std::vector<std::string> out;
    glob_t result{};
    if (::glob(pattern.c_str(), 0, nullptr, &result) == 0) {
      for (std::size_t i = 0; i < result.gl_pathc; ++i) out.emplace_back(result.gl_pathv[i]);
    }
    globfree(&result);
    return out;
  }
  std::string identity(const std::string& path) override {
    std::error_code ec;
    auto canonical = std::filesystem::weakly_canonical(path, ec);
    return ec ? path : canonical.string();
  }
};

class EmbeddedSource : public FileSource {
 public:
  explicit EmbeddedSource(const std::map<std::string, std::string>& files) : files_(files) {}
  bool read(const std::string& path, std::string& text, std::string& error) override {
    auto it = files_.find(normal(path));
    if (it == files_.end()) {
      error = "no such embedded file";
      return false;
    }
    text = it->second;
    return true;
  }
  std::vector<std::string> glob(const std::string& pattern) override {
    std::vector<std::string> out;
    std::string normal_pattern = normal(pattern);
    for (const auto& [name, text] : files_) {
      if (fnmatch(normal_pattern.c_str(), normal(name).c_str(), FNM_PATHNAME) == 0) {
        out.push_back(name);
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string identity(const std::string& path) override { return normal(path); }

 private:
  static std::string normal(const std::string& path) {
    return std::filesystem::path(path).lexically_normal().generic_string();
  }
  const std::map<std::string, std::string>& files_;
};

bool has_glob_chars(const std::string& text) {
  return text.find_first_of("*?[") != std::string::npos;
}

std::string describe(const Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Scalar:
      return "'" + node.Scalar() + "'";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Undefined:
      return "nothing";
  }
  return "?";
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

// RFC 9110 tchar: what header names and methods are made of.
bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool all_of(std::string_view text, bool (*predicate)(char)) {
  return !text.empty() && std::all_of(text.begin(), text.end(), predicate);
}

const std::set<std::string> kConditionKeys = {"user_agent",       "path", "method", "headers",
                                              "remote_addresses", "all",  "any",    "not"};

class Loader {
 public:
  explicit Loader(FileSource& source) : source_(source) { config_.classes = builtin_classes(); }

  LoadResult run(const std::string& main_file) {
    load(main_file, nullptr);
    resolve_rules();
    LoadResult result;
    result.errors = std::move(errors_);
    if (result.errors.empty()) result.config = std::make_shared<const Config>(std::move(config_));
    return result;
  }

 private:
  struct PendingRule {
    RuleConfig rule;
    std::optional<Action> action;
    DenyOverride deny;
    SourceLocation class_where;
    std::optional<SourceLocation> cost_where;
  };

  SourceLocation here(const Node& node) const {
    SourceLocation where;
    where.file = file_;
    YAML::Mark mark = node.Mark();
    if (mark.line >= 0) {
      where.line = mark.line + 1;
      where.column = mark.column + 1;
    }
    return where;
  }

  // "line N" within the current file, "file:N" across files.
  std::string where_text(const SourceLocation& where) const {
    if (where.file == file_) return "line " + std::to_string(where.line);
    return where.file + ":" + std::to_string(where.line);
  }

  void error_at(const SourceLocation& where, std::string message) {
    errors_.push_back({where.file, where.line, where.column, std::move(message)});
  }
  void error(const Node& node, std::string message) { error_at(here(node), std::move(message)); }

  // ---- files and includes ----

  void load(const std::string& path, const SourceLocation* included_from) {
    std::string identity = source_.identity(path);
    for (std::size_t i = 0; i < chain_.size(); ++i) {
      if (chain_[i] != identity) continue;
      std::string loop;
      for (std::size_t j = i; j < chain_names_.size(); ++j) loop += chain_names_[j] + " -> ";
      error_at(*included_from, "include loop: " + loop + path);
      return;
    }
    if (auto it = loaded_.find(identity); it != loaded_.end()) {
      error_at(*included_from, "'" + path + "' is already included (first read via " + it->second +
                                   "); a file may be included once");
      return;
    }
    std::string text;
    std::string read_error;
    if (!source_.read(path, text, read_error)) {
      if (included_from) {
        error_at(*included_from, "cannot include '" + path + "': " + read_error);
      } else {
        error_at({path, 0, 0}, read_error);
      }
      return;
    }
    loaded_[identity] =
        included_from ? included_from->file + ":" + std::to_string(included_from->line) : path;
    config_.files.push_back(path);

    std::string saved_file = std::exchange(file_, path);
    chain_.push_back(identity);
    chain_names_.push_back(path);
    try {
      Node root = YAML::Load(text);
      std::size_t errors_before = errors_.size();
      check_duplicate_keys(root);
      if (errors_.size() == errors_before) parse_top(root, included_from == nullptr);
    } catch (const YAML::ParserException& e) {
      errors_.push_back({path, e.mark.line >= 0 ? e.mark.line + 1 : 0,
                         e.mark.column >= 0 ? e.mark.column + 1 : 0, "YAML syntax: " + e.msg});
    } catch (const YAML::Exception& e) {
      errors_.push_back({path, e.mark.line >= 0 ? e.mark.line + 1 : 0,
                         e.mark.column >= 0 ? e.mark.column + 1 : 0, "YAML: " + e.msg});
    }
    chain_.pop_back();
    chain_names_.pop_back();
    file_ = saved_file;
  }

  // yaml-cpp 0.7 keeps one of two equal keys silently; a second `rules:` would hide the first.
  void check_duplicate_keys(const Node& node) {
    if (node.IsMap()) {
      std::map<std::string, int> seen;  // key -> line
      for (const auto& entry : node) {
        if (!entry.first.IsScalar()) {
          error(entry.first, "map keys must be plain strings, got " + describe(entry.first));
          continue;
        }
        int line = here(entry.first).line;
        auto [it, inserted] = seen.emplace(entry.first.Scalar(), line);
        if (!inserted) {
          error(entry.first, "duplicate key '" + entry.first.Scalar() + "' (first at line " +
                                 std::to_string(it->second) + ")");
        }
        check_duplicate_keys(entry.second);
      }
    } else if (node.IsSequence()) {
      for (const auto& item : node) check_duplicate_keys(item);
    }
  }

  void parse_include(const Node& value) {
    std::vector<Node> items;
    if (value.IsScalar()) {
      items.push_back(value);
    } else if (value.IsSequence()) {
      for (const auto& item : value) items.push_back(item);
    } else {
      error(value, "include: expected a file name or a list of them, got " + describe(value));
      return;
    }
    std::string base = std::filesystem::path(file_).parent_path().generic_string();
    for (const Node& item : items) {
      if (!item.IsScalar() || item.Scalar().empty()) {
        error(item, "include: expected a file name, got " + describe(item));
        continue;
      }
      std::string target = item.Scalar();
      if (target.front() != '/' && !base.empty()) target = base + "/" + target;
      target = std::filesystem::path(target).lexically_normal().generic_string();
      SourceLocation from = here(item);
      if (has_glob_chars(target)) {
        // An empty glob is fine: a conf.d directory may be empty.
        for (const std::string& match : source_.glob(target)) load(match, &from);
      } else {
        load(target, &from);
      }
    }
  }

  // ---- scalars ----

  bool get_string(const Node& node, const std::string& what, std::string& out) {
    if (!node.IsScalar()) {
      error(node, what + ": expected a string, got " + describe(node));
      return false;
    }
    out = node.Scalar();
    return true;
  }

  bool get_bool(const Node& node, const std::string& what, bool& out) {
    if (node.IsScalar()) {
      const std::string& text = node.Scalar();
      if (text == "true" || text == "True" || text == "TRUE") {
        out = true;
        return true;
      }
      if (text == "false" || text == "False" || text == "FALSE") {
        out = false;
        return true;
      }
    }
    error(node, what + ": expected true or false, got " + describe(node));
    return false;
  }

  template <typename Int>
  bool get_uint(const Node& node, const std::string& what, uint64_t min, uint64_t max, Int& out) {
    uint64_t value = 0;
    if (node.IsScalar()) {
      const std::string& text = node.Scalar();
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (ec == std::errc() && end == text.data() + text.size() && !text.empty()) {
        if (value < min || value > max) {
          error(node, what + ": " + text + " is out of range " + std::to_string(min) + ".." +
                          std::to_string(max));
          return false;
        }
        out = static_cast<Int>(value);
        return true;
      }
    }
    error(node, what + ": expected a whole number, got " + describe(node));
    return false;
  }

  // A plain decimal number within [min, max].
  bool get_number(const Node& node, const std::string& what, double min, double max, double& out) {
    double value = 0;
    if (!node.IsScalar() || !parse_decimal(node.Scalar(), value)) {
      error(node, what + ": expected a number, got " + describe(node));
      return false;
    }
    if (value < min || value > max) {
      std::ostringstream range;
      range << std::setprecision(15) << min << ".." << max;
      error(node, what + ": " + node.Scalar() + " is out of range " + range.str());
      return false;
    }
    out = value;
    return true;
  }

  bool get_duration(const Node& node, const std::string& what, Millis& out) {
    std::string message;
    if (!node.IsScalar()) {
      error(node, what + ": expected a duration (e.g. 10s), got " + describe(node));
      return false;
    }
    if (!parse_duration(node.Scalar(), out, message)) {
      error(node, what + ": " + message);
      return false;
    }
    return true;
  }

  template <typename Int>
  bool get_size(const Node& node, const std::string& what, uint64_t min, Int& out) {
    std::string message;
    uint64_t value = 0;
    if (!node.IsScalar()) {
      error(node, what + ": expected a size (e.g. 16KiB), got " + describe(node));
      return false;
    }
    if (!parse_size(node.Scalar(), value, message)) {
      error(node, what + ": " + message);
      return false;
    }
    if (value < min) {
      error(node, what + ": must be at least " + std::to_string(min) + " bytes");
      return false;
    }
    out = static_cast<Int>(value);
    return true;
  }

  bool get_host_port(const Node& node, const std::string& what, HostPort& out) {
    std::string text;
    if (!get_string(node, what, text)) return false;
    std::string message;
    if (!HostPort::parse(text, out, message)) {
      error(node, what + ": " + message);
      return false;
    }
    return true;
  }

  // A single string or a list of strings.
  bool get_string_list(const Node& node, const std::string& what, std::vector<Node>& out) {
    if (node.IsScalar()) {
      out.push_back(node);
      return true;
    }
    if (!node.IsSequence()) {
      error(node, what + ": expected a list, got " + describe(node));
      return false;
    }
    if (node.size() == 0) {
      error(node, what + ": the list is empty");
      return false;
    }
    bool ok = true;
    for (const auto& item : node) {
      if (!item.IsScalar()) {
        error(item, what + ": expected a string, got " + describe(item));
        ok = false;
      } else {
        out.push_back(item);
      }
    }
    return ok;
  }

  bool get_cidrs(const Node& node, const std::string& what, bool allow_empty,
                 std::vector<Cidr>& out) {
    if (allow_empty && node.IsSequence() && node.size() == 0) return true;
    std::vector<Node> items;
    if (!get_string_list(node, what, items)) return false;
    bool ok = true;
    for (const Node& item : items) {
      std::string message;
      if (auto cidr = Cidr::parse(item.Scalar(), &message)) {
        out.push_back(*cidr);
      } else {
        error(item, what + ": bad CIDR: " + message);
        ok = false;
      }
    }
    return ok;
  }

  void unknown_key(const Node& key, const std::string& where, const char* expected) {
    error(key, "unknown key '" + key.Scalar() + "' in " + where + " (expected one of: " + expected +
                   ")");
  }

  bool expect_map(const Node& node, const std::string& what) {
    if (node.IsMap()) return true;
    error(node, what + ": expected a map, got " + describe(node));
    return false;
  }

  // ---- top level and server settings ----

  void parse_top(const Node& root, bool is_main) {
    if (root.IsNull()) return;  // an empty file
    if (!root.IsMap()) {
      error(root, "the top level must be a map of keys, got " + describe(root));
      return;
    }
    static const std::set<std::string> kServerKeys = {
        "listen",     "upstream",          "admin",         "threads", "trusted_proxies",
        "websocket",  "request_id_header", "upstream_pool", "limits",  "timeouts",
        "access_log", "static_responses",  "throttle",      "redis",   "behaviour"};
    ServerSettings& server = config_.server;
    for (const auto& entry : root) {
      const std::string& key = entry.first.Scalar();
      const Node& value = entry.second;
      if (value.IsNull()) {
        // yaml-cpp marks an empty value at the next token, often on a later line: name the key.
        error(entry.first, "'" + key + "' has no value");
        continue;
      }
      if (key == "include") {
        parse_include(value);
      } else if (key == "classes") {
        parse_classes(value);
      } else if (key == "rules") {
        parse_rules(value);
      } else if (key == "costs") {
        parse_costs(value);
      } else if (kServerKeys.count(key) && !is_main) {
        error(entry.first, "'" + key +
                               "' is a server setting, allowed only in the main config file (" +
                               config_.files.front() + ")");
      } else if (key == "listen") {
        get_host_port(value, key, server.listen);
      } else if (key == "admin") {
        get_host_port(value, key, server.admin);
      } else if (key == "upstream") {
        std::string text;
        std::string message;
        if (get_string(value, key, text) &&
            !UpstreamSettings::parse_url(text, server.upstream.address, message)) {
          error(value, message);
        }
      } else if (key == "threads") {
        get_uint(value, key, 0, 4096, server.threads);
      } else if (key == "trusted_proxies") {
        server.trusted_proxies.clear();
        get_cidrs(value, key, true, server.trusted_proxies);
      } else if (key == "websocket") {
        std::string text;
        if (get_string(value, key, text)) {
          if (text == "tunnel") {
            server.websocket = WebSocketPolicy::kTunnel;
          } else if (text == "refuse") {
            server.websocket = WebSocketPolicy::kRefuse;
          } else {
            error(value, "websocket: expected tunnel or refuse, got '" + text + "'");
          }
        }
      } else if (key == "request_id_header") {
        std::string text;
        if (get_string(value, key, text)) {
          if (!all_of(text, is_token_char)) {
            error(value, "request_id_header: '" + text + "' is not a valid header name");
          } else {
            server.request_id_header = text;
          }
        }
      } else if (key == "upstream_pool") {
        parse_upstream_pool(value);
      } else if (key == "limits") {
        parse_limits(value);
      } else if (key == "timeouts") {
        parse_timeouts(value);
      } else if (key == "access_log") {
        parse_access_log(value);
      } else if (key == "static_responses") {
        parse_static_responses(value);
      } else if (key == "throttle") {
        parse_throttle(value);
      } else if (key == "redis") {
        parse_redis(value);
      } else if (key == "behaviour") {
        parse_behaviour(value);
      } else {
        unknown_key(entry.first, "the top level",
                    "listen, upstream, admin, threads, trusted_proxies, websocket, "
                    "request_id_header, upstream_pool, limits, timeouts, access_log, "
                    "static_responses, throttle, redis, behaviour, include, classes, rules, "
                    "costs");
      }
    }
  }

  void parse_upstream_pool(const Node& node) {
    if (!expect_map(node, "upstream_pool")) return;
    UpstreamSettings& upstream = config_.server.upstream;
    for (const auto& entry : node) {
      const std::string& key = entry.first.Scalar();
      if (key == "max_idle") {
        get_uint(entry.second, "upstream_pool.max_idle", 0, 1'000'000, upstream.pool_max_idle);
      } else if (key == "idle_timeout") {
        get_duration(entry.second, "upstream_pool.idle_timeout", upstream.pool_idle_timeout);
      } else {
        unknown_key(entry.first, "upstream_pool", "max_idle, idle_timeout");
      }
    }
  }

  void parse_limits(const Node& node) {
    if (!expect_map(node, "limits")) return;
    LimitSettings& limits = config_.server.limits;
    for (const auto& entry : node) {
      const std::string& key = entry.first.Scalar();
      const std::string what = "limits." + key;
      if (key == "max_header_bytes") {
        get_size(entry.second, what, 1024, limits.max_header_bytes);
      } else if (key == "max_body_bytes") {
        get_size(entry.second, what, 0, limits.max_body_bytes);
      } else if (key == "max_connections") {
        get_uint(entry.second, what, 1, 10'000'000, limits.max_connections);
      } else if (key == "max_response_header_bytes") {
        get_size(entry.second, what, 1024, limits.max_response_header_bytes);
      } else if (key == "max_connections_per_address") {
        get_uint(entry.second, what, 0, 10'000'000, limits.max_connections_per_address);
      } else if (key == "min_body_rate") {
        get_size(entry.second, what, 0, limits.min_body_rate);
      } else {
        unknown_key(entry.first, "limits",
                    "max_header_bytes, max_body_bytes, max_connections, "
                    "max_connections_per_address, min_body_rate, max_response_header_bytes");
      }
    }
  }

  void parse_timeouts(const Node& node) {
    if (!expect_map(node, "timeouts")) return;
    ServerSettings& server = config_.server;
    const std::map<std::string, Millis*> fields = {
        {"header_read", &server.timeouts.header_read},
        {"idle_keepalive", &server.timeouts.idle_keepalive},
        {"body_read", &server.timeouts.body_read},
        {"client_write", &server.timeouts.client_write},
        {"upstream_connect", &server.upstream.connect_timeout},
        {"upstream_response", &server.upstream.response_timeout},
        {"shutdown_grace", &server.timeouts.shutdown_grace},
    };
    for (const auto& entry : node) {
      const std::string& key = entry.first.Scalar();
      auto it = fields.find(key);
      if (it == fields.end()) {
        unknown_key(entry.first, "timeouts",
                    "header_read, idle_keepalive, body_read, client_write, upstream_connect, "
                    "upstream_response, shutdown_grace");
        continue;
      }
      get_duration(entry.second, "timeouts." + key, *it->second);
    }
  }

  void parse_access_log(const Node& node) {
    if (!expect_map(node, "access_log")) return;
    AccessLogSettings& log = config_.server.access_log;
    for (const auto& entry : node) {
      const std::string& key = entry.first.Scalar();
      const std::string what = "access_log." + key;
      if (key == "path") {
        get_string(entry.second, what, log.path);
      } else if (key == "format") {
        std::string text;
        if (get_string(entry.second, what, text)) {
          if (text == "jsonl") {
            log.format = AccessLogFormat::kJsonLines;
          } else if (text == "combined") {
            log.format = AccessLogFormat::kCombined;
          } else {
            error(entry.second, what + ": expected jsonl or combined, got '" + text + "'");
          }
        }
      } else if (key == "headers") {
        get_bool(entry.second, what, log.headers);
      } else if (key == "anonymize_ip") {
        get_bool(entry.second, what, log.anonymize_ip);
      } else if (key == "queue_max") {
        get_uint(entry.second, what, 1, 100'000'000, log.queue_max);
      } else {
        unknown_key(entry.first, "access_log", "path, format, headers, anonymize_ip, queue_max");
      }
    }
  }

  void parse_static_responses(const Node& node) {
    if (!node.IsSequence()) {
      error(node, "static_responses: expected a list, got " + describe(node));
      return;
    }
    std::map<std::string, int> seen_paths;
    config_.server.static_responses.clear();
    for (const auto& item : node) {
      if (!expect_map(item, "static_responses entry")) continue;
      StaticResponseSettings response;
      bool has_path = false;
      for (const auto& entry : item) {
        const std::string& key = entry.first.Scalar();
        const std::string what = "static_responses." + key;
        if (key == "path") {
          if (get_string(entry.second, what, response.path)) {
            if (response.path.empty() || response.path.front() != '/') {
              error(entry.second, what + ": must start with '/'");
            } else {
              has_path = true;
            }
          }
        } else if (key == "status") {
          get_uint(entry.second, what, 100, 599, response.status);
        } else if (key == "content_type") {
          get_string(entry.second, what, response.content_type);
        } else if (key == "body") {
          get_string(entry.second, what, response.body);
        } else {
          unknown_key(entry.first, "a static response", "path, status, content_type, body");
        }
      }
      if (!has_path) {
        if (!item["path"]) error(item, "static response without a path");
        continue;
      }
      auto [it, inserted] = seen_paths.emplace(response.path, here(item).line);
      if (!inserted) {
        error(item, "static response for '" + response.path + "' is already defined at line " +
                        std::to_string(it->second));
        continue;
      }
      config_.server.static_responses.push_back(std::move(response));
    }
  }

  void parse_throttle(const Node& node) {
    if (!expect_map(node, "throttle")) return;
    ThrottleSettings& throttle = config_.server.throttle;
    for (const auto& entry : node) {
      const std::string& key = entry.first.Scalar();
      const std::string what = "throttle." + key;
      if (key == "client_table_size") {
        get_uint(entry.second, what, 1, 100'000'000, throttle.client_table_size);
      } else if (key == "max_tarpitted") {
        get_uint(entry.second, what, 0, 10'000'000, throttle.max_tarpitted);
      } else if (key == "tarpit_delay") {
        Millis delay{};
        if (get_duration(entry.second, what, delay)) {
          if (delay > Millis(3'600'000)) {
            error(entry.second, what + ": at most 1h");
          } else {
            throttle.tarpit_delay = delay;
          }
        }
      } else {
        unknown_key(entry.first, "throttle", "client_table_size, max_tarpitted, tarpit_delay");
      }
    }
  }

  void parse_redis(const Node& node) {
    if (!expect_map(node, "redis")) return;
    RedisSettings& redis = config_.server.redis;
    redis.enabled = true;  // the block's presence turns it on
    for (const auto& entry : node) {
      const std::string& key = entry.first.Scalar();
      const std::string what = "redis." + key;
      if (key == "enabled") {
        get_bool(entry.second, what, redis.enabled);
      } else if (key == "address") {
        get_host_port(entry.second, what, redis.address);
      } else if (key == "budget" || key == "connect_timeout") {
        Millis value{};
        if (get_duration(entry.second, what, value)) {
          if (value < Millis(1)) {
            error(entry.second, what + ": must be at least 1ms");
          } else {
            (key == "budget" ? redis.budget : redis.connect_timeout) = value;
          }
        }
      } else if (key == "key_prefix") {
        get_string(entry.second, what, redis.key_prefix);
      } else {
        unknown_key(entry.first, "redis", "enabled, address, budget, key_prefix, connect_timeout");
      }
    }
  }

  void parse_behaviour(const Node& node) {
    if (!expect_map(node, "behaviour")) return;
    BehaviourConfig& behaviour = config_.behaviour;
    behaviour.enabled = true;
    bool have_model = false;
    for (const auto& entry : node) {
      const std::string& key = entry.first.Scalar();
      const std::string what = "behaviour." + key;
      if (key == "model") {
        std::string path;
        if (get_string(entry.second, what, path)) {
          std::filesystem::path model(path);
          if (model.is_relative()) {
            model = std::filesystem::path(file_).parent_path() / model;
          }
          behaviour.model_path = model.lexically_normal().generic_string();
          behaviour.model_where = here(entry.second);
          have_model = true;
        }
      } else if (key == "enforce") {
        get_bool(entry.second, what, behaviour.enforce);
      } else if (key == "score_claimed_bots") {
        get_bool(entry.second, what, behaviour.score_claimed_bots);
      } else if (key == "table_size") {
        get_uint(entry.second, what, 16, 100'000'000, behaviour.table_size);
      } else if (key == "thresholds") {
        if (!entry.second.IsSequence()) {
          error(entry.second, what + ": expected a list of {min_score, class}");
          continue;
        }
        for (const Node& item : entry.second) {
          if (!expect_map(item, "behaviour.thresholds entry")) continue;
          BehaviourThreshold threshold;
          threshold.where = here(item);
          bool have_score = false, have_class = false;
          for (const auto& field : item) {
            const std::string& name = field.first.Scalar();
            if (name == "min_score") {
              have_score = get_number(field.second, "behaviour.thresholds min_score", 0, 1,
                                      threshold.min_score);
            } else if (name == "class") {
              have_class = get_string(field.second, "behaviour.thresholds class",
                                      threshold.class_name);
            } else {
              unknown_key(field.first, "behaviour.thresholds entry", "min_score, class");
            }
          }
          if (!have_score || !have_class) {
            error(item, "behaviour.thresholds entry needs min_score and class");
            continue;
          }
          behaviour.thresholds.push_back(std::move(threshold));
        }
      } else {
        unknown_key(entry.first, "behaviour",
                    "model, thresholds, enforce, score_claimed_bots, table_size");
      }
    }
    if (!have_model) error(node, "behaviour: needs model (the model file's path)");
    std::stable_sort(behaviour.thresholds.begin(), behaviour.thresholds.end(),
                     [](const auto& a, const auto& b) { return a.min_score > b.min_score; });
  }

  // ---- limits and costs ----

  // {rate: RATE, burst: N}, both required.
  std::optional<RateLimitConfig> parse_limit(const Node& node, const std::string& what) {
    if (!expect_map(node, what)) return std::nullopt;
    RateLimitConfig limit;
    limit.where = here(node);
    bool ok = true;
    bool has_rate = false;
    bool has_burst = false;
    for (const auto& entry : node) {
      const std::string& key = entry.first.Scalar();
      if (key == "rate") {
        std::string text;
        std::string message;
        if (!get_string(entry.second, what + " rate", text)) {
          ok = false;
        } else if (!parse_rate(text, limit.rate_per_second, message)) {
          error(entry.second, what + " rate: " + message);
          ok = false;
        } else {
          has_rate = true;
        }
      } else if (key == "burst") {
        if (get_number(entry.second, what + " burst", 1, 1e9, limit.burst)) {
          has_burst = true;
        } else {
          ok = false;
        }
      } else {
        unknown_key(entry.first, what, "rate, burst");
        ok = false;
      }
    }
    for (const char* key : {"rate", "burst"}) {
      if (!node[key]) {
        error(node, what + ": needs " + key + ": (e.g. {rate: 10/s, burst: 20})");
        ok = false;
      }
    }
    if (!ok || !has_rate || !has_burst) return std::nullopt;
    return limit;
  }

  void parse_costs(const Node& node) {
    if (!node.IsSequence()) {
      error(node, "costs: expected a list of {path: REGEX, cost: N}, got " + describe(node));
      return;
    }
    for (const auto& item : node) {
      if (!expect_map(item, "costs entry")) continue;
      CostConfig cost;
      cost.where = here(item);
      bool ok = true;
      for (const auto& entry : item) {
        const std::string& key = entry.first.Scalar();
        if (key == "path") {
          ok = parse_cost_path(entry.second, cost) && ok;
        } else if (key == "cost") {
          if (!get_number(entry.second, "costs entry cost", 0, 1e6, cost.cost)) {
            ok = false;
          } else if (cost.cost <= 0) {
            error(entry.second, "costs entry cost: must be above zero");
            ok = false;
          }
        } else {
          unknown_key(entry.first, "a costs entry", "path, cost");
          ok = false;
        }
      }
      for (const char* key : {"path", "cost"}) {
        if (!item[key]) {
          error(item, std::string("costs entry: needs ") + key + ":");
          ok = false;
        }
      }
      if (ok) config_.costs.push_back(std::move(cost));
    }
  }

  // 'regex' or {regex: R, case_sensitive: B}; validated like a rule's path pattern.
  bool parse_cost_path(const Node& node, CostConfig& cost) {
    PatternConfig& pattern = cost.path;
    pattern.kind = PatternConfig::Kind::kRegex;
    pattern.where = here(node);
    const std::string what = "costs entry path";
    if (node.IsScalar()) {
      pattern.text = node.Scalar();
    } else if (node.IsMap()) {
      bool ok = true;
      for (const auto& entry : node) {
        const std::string& key = entry.first.Scalar();
        if (key == "regex") {
          ok = get_string(entry.second, what + " regex", pattern.text) && ok;
        } else if (key == "case_sensitive") {
          ok = get_bool(entry.second, what + " case_sensitive", pattern.case_sensitive) && ok;
        } else {
          unknown_key(entry.first, what, "regex, case_sensitive");
          ok = false;
        }
      }
      if (!ok) return false;
      if (!node["regex"]) {
        error(node, what + ": a pattern map needs regex:");
        return false;
      }
    } else {
      error(node, what + ": expected a regex (a string or {regex: ...}), got " + describe(node));
      return false;
    }
    if (pattern.text.empty()) {
      error(node, what + ": empty pattern");
      return false;
    }
    unsigned flags = HS_FLAG_SINGLEMATCH | (pattern.case_sensitive ? 0 : HS_FLAG_CASELESS);
    if (std::string message = hyperscan_error(pattern.text, flags, cost.can_be_empty);
        !message.empty()) {
      error(node, "costs entry: regex '" + pattern.text + "' is not supported: " + message);
      return false;
    }
    return true;
  }

  // ---- classes ----

  bool parse_deny(const Node& node, const std::string& what, DenyOverride& out) {
    if (!expect_map(node, what)) return false;
    bool ok = true;
    for (const auto& entry : node) {
      const std::string& key = entry.first.Scalar();
      if (key == "status") {
        int status = 0;
        if (get_uint(entry.second, what + ".status", 400, 599, status)) {
          out.status = status;
        } else {
          ok = false;
        }
      } else if (key == "body") {
        std::string body;
        if (get_string(entry.second, what + ".body", body)) {
          out.body = body;
        } else {
          ok = false;
        }
      } else {
        unknown_key(entry.first, what, "status, body");
        ok = false;
      }
    }
    return ok;
  }

  void parse_classes(const Node& node) {
    if (!expect_map(node, "classes")) return;
    for (const auto& entry : node) {
      const std::string& name = entry.first.Scalar();
      if (!all_of(name, is_name_char)) {
        error(entry.first, "class name '" + name + "' may contain only A-Z a-z 0-9 _ . -");
        continue;
      }
      const Node& body = entry.second;
      if (!expect_map(body, "class '" + name + "'")) continue;
      ClassConfig config;
      config.name = name;
      config.where = here(entry.first);
      bool has_action = false;
      for (const auto& field : body) {
        const std::string& key = field.first.Scalar();
        if (key == "action") {
          std::string text;
          if (get_string(field.second, "class '" + name + "' action", text)) {
            if (auto action = parse_action(text)) {
              config.action = *action;
              has_action = true;
            } else {
              error(field.second, "class '" + name + "': unknown action '" + text +
                                      "' (expected allow, deny, throttle, tarpit or log)");
            }
          }
        } else if (key == "deny") {
          DenyOverride deny;
          if (parse_deny(field.second, "class '" + name + "' deny", deny)) {
            if (deny.status) config.deny.status = *deny.status;
            if (deny.body) config.deny.body = *deny.body;
          }
        } else if (key == "description") {
          get_string(field.second, "class '" + name + "' description", config.description);
        } else if (key == "limit") {
          config.limit = parse_limit(field.second, "class '" + name + "' limit");
        } else if (key == "class_limit") {
          config.class_limit = parse_limit(field.second, "class '" + name + "' class_limit");
        } else if (key == "ipv4_prefix") {
          get_uint(field.second, "class '" + name + "' ipv4_prefix", 0, 32, config.ipv4_prefix);
        } else if (key == "ipv6_prefix") {
          get_uint(field.second, "class '" + name + "' ipv6_prefix", 0, 128, config.ipv6_prefix);
        } else {
          unknown_key(field.first, "class '" + name + "'",
                      "action, deny, description, limit, class_limit, ipv4_prefix, ipv6_prefix");
        }
      }
      if (has_action && !limits_apply(config.action)) {
        if (config.limit) {
          error_at(config.limit->where,
                   no_effect("class '" + name + "'", "limit", config.action, ""));
        }
        if (config.class_limit) {
          error_at(config.class_limit->where,
                   no_effect("class '" + name + "'", "class_limit", config.action, ""));
        }
      }
      if (!has_action && !body["action"]) {
        error(entry.first, "class '" + name + "' needs an action");
        continue;
      }
      if (auto it = class_defs_.find(name); it != class_defs_.end()) {
        error(entry.first, "class '" + name + "' is already defined at " + where_text(it->second));
        continue;
      }
      class_defs_[name] = config.where;
      auto existing = std::find_if(config_.classes.begin(), config_.classes.end(),
                                   [&](const ClassConfig& c) { return c.name == name; });
      if (existing != config_.classes.end()) {
        if (config.description.empty()) config.description = existing->description;
        *existing = std::move(config);
      } else {
        config_.classes.push_back(std::move(config));
      }
    }
  }

  // ---- rules and conditions ----

  void parse_rules(const Node& node) {
    if (!node.IsSequence()) {
      error(node, "rules: expected a list of rules, got " + describe(node));
      return;
    }
    for (const auto& item : node) parse_rule(item);
  }

  void parse_rule(const Node& node) {
    if (!expect_map(node, "rule")) return;
    PendingRule pending;
    RuleConfig& rule = pending.rule;
    rule.where = here(node);
    rule.condition.kind = ConditionKind::kAll;
    rule.condition.where = rule.where;
    std::size_t errors_before = errors_.size();
    const Node name_node = node["name"];
    if (!name_node) {
      error(node, "rule without a name");
    } else if (get_string(name_node, "rule name", rule.name)) {
      if (!all_of(rule.name, is_name_char)) {
        error(name_node, "rule name '" + rule.name + "' may contain only A-Z a-z 0-9 _ . -");
      }
    }
    const std::string what = rule.name.empty() ? std::string("rule") : "rule '" + rule.name + "'";
    for (const auto& entry : node) {
      const std::string& key = entry.first.Scalar();
      const Node& value = entry.second;
      if (key == "name") {
        continue;
      } else if (key == "class") {
        if (get_string(value, what + " class", rule.class_name)) {
          pending.class_where = here(value);
          if (rule.class_name.empty()) error(value, what + ": empty class name");
        }
      } else if (key == "action") {
        std::string text;
        if (get_string(value, what + " action", text)) {
          pending.action = parse_action(text);
          if (!pending.action) {
            error(value, what + ": unknown action '" + text +
                             "' (expected allow, deny, throttle, tarpit or log)");
          }
        }
      } else if (key == "enforce") {
        get_bool(value, what + " enforce", rule.enforce);
      } else if (key == "deny") {
        parse_deny(value, what + " deny", pending.deny);
      } else if (key == "description") {
        std::string ignored;
        get_string(value, what + " description", ignored);
      } else if (key == "limit") {
        rule.limit = parse_limit(value, what + " limit");
      } else if (key == "cost") {
        double cost = 0;
        if (get_number(value, what + " cost", 0, 1e6, cost)) {
          if (cost <= 0) {
            error(value, what + " cost: must be above zero");
          } else {
            rule.cost = cost;
            pending.cost_where = here(value);
          }
        }
      } else if (kConditionKeys.count(key)) {
        parse_condition_key(entry.first, value, what, rule.condition);
      } else {
        unknown_key(entry.first, what,
                    "name, class, action, enforce, deny, description, limit, cost, user_agent, "
                    "path, method, headers, remote_addresses, all, any, not");
      }
    }
    if (rule.condition.children.empty() && errors_.size() == errors_before) {
      error(node, what +
                      " has no conditions (give user_agent, path, method, headers, "
                      "remote_addresses, all, any or not)");
    }
    if (rule.class_name.empty() && !pending.action && !node["class"] && !node["action"]) {
      error(node, what + " needs a class or an action");
    }
    if (!rule.name.empty()) {
      auto [it, inserted] = rule_names_.emplace(rule.name, rule.where);
      if (!inserted) {
        error(name_node,
              "duplicate rule name '" + rule.name + "' (first at " + where_text(it->second) + ")");
      }
    }
    if (errors_.size() == errors_before) rules_.push_back(std::move(pending));
  }

  // One condition key of a rule or a condition block; appends a child to `parent` (a kAll).
  void parse_condition_key(const Node& key_node, const Node& value, const std::string& what,
                           Condition& parent) {
    const std::string& key = key_node.Scalar();
    Condition condition;
    condition.where = here(key_node);
    const std::string context = what + " " + key;
    if (key == "user_agent" || key == "path") {
      condition.kind = key == "user_agent" ? ConditionKind::kUserAgent : ConditionKind::kPath;
      if (!parse_patterns(value, context, condition.patterns)) return;
    } else if (key == "method") {
      condition.kind = ConditionKind::kMethod;
      std::vector<Node> items;
      if (!get_string_list(value, context, items)) return;
      for (const Node& item : items) {
        if (!all_of(item.Scalar(), is_token_char)) {
          error(item, context + ": '" + item.Scalar() + "' is not a method name");
          return;
        }
        condition.methods.push_back(item.Scalar());
      }
    } else if (key == "remote_addresses") {
      condition.kind = ConditionKind::kRemoteAddress;
      if (!get_cidrs(value, context, false, condition.cidrs)) return;
    } else if (key == "headers") {
      parse_headers(value, context, parent);
      return;
    } else if (key == "all" || key == "any") {
      condition.kind = key == "all" ? ConditionKind::kAll : ConditionKind::kAny;
      if (!value.IsSequence()) {
        error(value, context + ": expected a list of condition blocks, got " + describe(value));
        return;
      }
      if (value.size() == 0) {
        error(value, context + ": empty list");
        return;
      }
      for (const auto& item : value) {
        Condition block;
        if (parse_block(item, context, block)) condition.children.push_back(std::move(block));
      }
      if (condition.children.size() != value.size()) return;
    } else if (key == "not") {
      condition.kind = ConditionKind::kNot;
      Condition block;
      if (!parse_block(value, context, block)) return;
      condition.children.push_back(std::move(block));
    }
    parent.children.push_back(std::move(condition));
  }

  // A map of condition keys, all of which must hold.
  bool parse_block(const Node& node, const std::string& what, Condition& out) {
    if (!node.IsMap()) {
      error(node, what + ": expected a condition block (a map such as {user_agent: [...]}), got " +
                      describe(node));
      return false;
    }
    if (node.size() == 0) {
      error(node, what + ": empty condition block");
      return false;
    }
    out.kind = ConditionKind::kAll;
    out.where = here(node);
    std::size_t errors_before = errors_.size();
    for (const auto& entry : node) {
      if (!kConditionKeys.count(entry.first.Scalar())) {
        unknown_key(entry.first, what,
                    "user_agent, path, method, headers, remote_addresses, all, any, not");
        continue;
      }
      parse_condition_key(entry.first, entry.second, what, out);
    }
    return errors_.size() == errors_before;
  }

  void parse_headers(const Node& node, const std::string& what, Condition& parent) {
    if (!expect_map(node, what)) return;
    if (node.size() == 0) {
      error(node, what + ": empty map");
      return;
    }
    std::vector<std::pair<std::string, int>> seen;
    for (const auto& entry : node) {
      const std::string& name = entry.first.Scalar();
      const std::string context = what + " " + name;
      if (!all_of(name, is_token_char)) {
        error(entry.first, what + ": '" + name + "' is not a header name");
        continue;
      }
      bool duplicate = false;
      for (const auto& [other, line] : seen) {
        if (iequals_ascii(other, name)) {
          error(entry.first, what + ": header '" + name + "' is already listed at line " +
                                 std::to_string(line) + " (header names ignore case)");
          duplicate = true;
        }
      }
      if (duplicate) continue;
      seen.emplace_back(name, here(entry.first).line);
      Condition condition;
      condition.header = name;
      condition.where = here(entry.first);
      const Node& value = entry.second;
      if (value.IsMap() && (value["present"] || value["absent"])) {
        if (value.size() != 1) {
          error(value, context + ": give either {present: BOOL} or {absent: BOOL}, alone");
          continue;
        }
        bool present = value["present"].IsDefined();
        bool flag = false;
        if (!get_bool(present ? value["present"] : value["absent"], context, flag)) continue;
        condition.kind =
            (present == flag) ? ConditionKind::kHeaderPresent : ConditionKind::kHeaderAbsent;
      } else {
        condition.kind = ConditionKind::kHeaderMatches;
        if (!parse_patterns(value, context, condition.patterns)) continue;
      }
      parent.children.push_back(std::move(condition));
    }
  }

  static bool iequals_ascii(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
             return std::tolower(static_cast<unsigned char>(x)) ==
                    std::tolower(static_cast<unsigned char>(y));
           });
  }

  // A pattern, or a list of them: 'regex', {regex: R, case_sensitive: B}, {token: T, ...}.
  bool parse_patterns(const Node& node, const std::string& what, std::vector<PatternConfig>& out) {
    std::vector<Node> items;
    if (node.IsSequence()) {
      if (node.size() == 0) {
        error(node, what + ": empty list");
        return false;
      }
      for (const auto& item : node) items.push_back(item);
    } else if (node.IsScalar() || node.IsMap()) {
      items.push_back(node);
    } else {
      error(node, what + ": expected a list of patterns, got " + describe(node));
      return false;
    }
    bool ok = true;
    for (const Node& item : items) {
      PatternConfig pattern;
      pattern.where = here(item);
      if (item.IsScalar()) {
        pattern.text = item.Scalar();
      } else if (item.IsMap()) {
        bool has_text = false;
        for (const auto& entry : item) {
          const std::string& key = entry.first.Scalar();
          if (key == "regex" || key == "token") {
            if (has_text) {
              error(entry.first, what + ": give either regex or token, not both");
              ok = false;
            }
            has_text = true;
            pattern.kind =
                key == "regex" ? PatternConfig::Kind::kRegex : PatternConfig::Kind::kToken;
            if (!get_string(entry.second, what + " " + key, pattern.text)) ok = false;
          } else if (key == "case_sensitive") {
            if (!get_bool(entry.second, what + " case_sensitive", pattern.case_sensitive)) {
              ok = false;
            }
          } else {
            unknown_key(entry.first, what, "regex, token, case_sensitive");
            ok = false;
          }
        }
        if (!has_text) {
          error(item, what + ": a pattern map needs regex: or token:");
          ok = false;
          continue;
        }
      } else {
        error(item, what + ": expected a pattern (a string or {regex: ...} / {token: ...}), got " +
                        describe(item));
        ok = false;
        continue;
      }
      if (pattern.text.empty()) {
        error(item, what + ": empty pattern");
        ok = false;
        continue;
      }
      out.push_back(std::move(pattern));
    }
    return ok;
  }

  void resolve_rules() {
    for (PendingRule& pending : rules_) {
      RuleConfig& rule = pending.rule;
      const ClassConfig* klass = nullptr;
      if (!rule.class_name.empty()) {
        klass = config_.find_class(rule.class_name);
        if (!klass) {
          std::string known;
          for (const ClassConfig& c : config_.classes)
            known += (known.empty() ? "" : ", ") + c.name;
          error_at(pending.class_where, "rule '" + rule.name + "': unknown class '" +
                                            rule.class_name + "' (known: " + known + ")");
          continue;
        }
      }
      rule.action = pending.action ? *pending.action : klass->action;
      if (klass) rule.deny = klass->deny;
      if (pending.deny.status) rule.deny.status = *pending.deny.status;
      if (pending.deny.body) rule.deny.body = *pending.deny.body;
      if (!limits_apply(rule.action)) {
        const std::string from = pending.action ? "" : " (from class '" + rule.class_name + "')";
        const std::string owner = "rule '" + rule.name + "'";
        if (rule.limit) error_at(rule.limit->where, no_effect(owner, "limit", rule.action, from));
        if (rule.cost) error_at(*pending.cost_where, no_effect(owner, "cost", rule.action, from));
        rule.limit.reset();
      } else if (!rule.limit && klass) {
        rule.limit = klass->limit;  // inherited; `where` stays the class's
      }
      config_.rules.push_back(std::move(rule));
    }
    for (const BehaviourThreshold& threshold : config_.behaviour.thresholds) {
      if (!config_.find_class(threshold.class_name)) {
        error_at(threshold.where, "behaviour threshold: unknown class '" +
                                      threshold.class_name + "'");
      }
    }
  }

  FileSource& source_;
  Config config_;
  std::vector<ConfigError> errors_;
  std::string file_;
  std::vector<std::string> chain_;        // identities of the files being read, outermost first
  std::vector<std::string> chain_names_;  // their names as written
  std::map<std::string, std::string> loaded_;  // identity -> "file:line" that included it
  std::map<std::string, SourceLocation> class_defs_;
  std::map<std::string, SourceLocation> rule_names_;
  std::vector<PendingRule> rules_;
};

}  // namespace

LoadResult load_config_file(const std::string& path) {
  DiskSource source;
  return Loader(source).run(path);
}

LoadResult load_config_embedded(const std::string& main_file,
                                const std::map<std::string, std::string>& files) {
  EmbeddedSource source(files);
  return Loader(source).run(main_file);
}

}  // namespace crawlgate
