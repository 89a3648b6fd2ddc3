// rules_bench: the cost of the rules stage per request (RuleSet::evaluate, every field: User-Agent,
// target, headers, method, client address) at three rule-set sizes, against what nginx `map` and
// HAProxy ACLs do with the same User-Agent patterns: try one regex after another until one matches.
//
// The three sets carry the same mix of field kinds, so that comparing them measures growth with
// the pattern count (the issue's "flat" target). Every set holds one identical fixed block
// (fixed.yaml: 8 path regexes, 14 header regexes over 7 header names, 7 absent rules, 2 `not`
// rules, 60 CIDR blocks in 25 rules); what differs is the number of User-Agent and path patterns,
// about 10 path patterns per 100 User-Agent patterns:
//   160:   rules/default classes.yaml + ai-crawlers.yaml + fixed block + 16 path rules
//   1500:  + known-bots.yaml (the whole default rule set) + fixed block + 150 path rules
//   5000:  + synthetic User-Agent rules (3/4 tokens, 1/4 regexes) + fixed block + 500 path rules
//   5000-heavy: the previous 5,000 set, NOT comparable with the others: its non-UA extras grow
//          with it (205 header regexes, 72 absent rules, 602 CIDR blocks); evaluate only.
// Every set is loaded through the real loader (load_config_file on a main YAML written to a temp
// directory that includes the default files) and compiled with RuleSet::compile.
//
// Two requests per set, both GET /wiki/Special:RecentChanges?days=30 from an IPv4 client with a
// Chrome-like header set: `bot` has the GPTBot User-Agent (matches), `browser` the most common
// Chrome UA of shared/data/browser-user-agents/browser-uas.tsv (matches no rule).
//
// Benchmarks:
//   BM_RuleSet/N/REQ         RuleSet::evaluate with one MatchScratch (per thread, reused)
//   BM_HyperscanUaOnly/N/REQ one hs_scan of the User-Agent over a database of the UA patterns
//                            only: the floor for the UA part of evaluate
//   BM_Pcre2Loop/N/REQ       PCRE2-JIT, pattern after pattern (rule order) until the first match
//   BM_StdRegexLoop/N/REQ    the same with std::regex (ECMAScript); slow, so fixed iterations
// The loops see only the User-Agent; RuleSet::evaluate does strictly more work.
//
// Run: build-bench/bench/rules_bench --benchmark_min_time=0.2

#include <benchmark/benchmark.h>
#include <hs/hs.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef CRAWLGATE_HAVE_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crawlgate/rules/config.h"
#include "crawlgate/rules/ip_address.h"
#include "crawlgate/rules/request_view.h"
#include "crawlgate/rules/rule_set.h"

namespace {

namespace fs = std::filesystem;
using namespace crawlgate;

constexpr std::string_view kBotUserAgent =
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
    "+https://openai.com/gptbot)";
// Used only when browser-uas.tsv cannot be read.
constexpr std::string_view kFallbackBrowserUserAgent =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/145.0.0.0 Safari/537.36";
constexpr std::string_view kTarget = "/wiki/Special:RecentChanges?days=30";
constexpr std::string_view kClientAddress = "198.51.100.77";

std::string env_or(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}

[[noreturn]] void die(const std::string& message) {
  std::cerr << "rules_bench: " << message << "\n";
  std::exit(1);
}

// ---- The engine's pattern forms (rules/src/rule_set.cpp), for the baselines -------------------

bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}


// {token: X}: X where the neighbouring characters are not [A-Za-z0-9_-], as a regex (what the
// loops use; the engine compiles the literal X and checks the neighbours in its match callback).
std::string token_regex(std::string_view token) {
  const std::string outside = "[^A-Za-z0-9_-]";
  auto continues = [](char c) { return is_word_char(c) || c == '-'; };
  std::string out;
  if (continues(token.front())) out += "(?:^|" + outside + ")";
  out += escape_literal(token);
  if (continues(token.back())) out += "(?:$|" + outside + ")";
  return out;
}

bool continues_token(char c) { return is_word_char(c) || c == '-'; }

struct UaPattern {
  std::string regex;  // for the loops; a token in its boundary-regex form
  bool caseless = true;
  // A token, for Hyperscan in the engine's form: the escaped literal, whose boundaries the match
  // callback checks (empty for a regex).
  std::string literal;
  unsigned token_length = 0;
  bool before = false, after = false;
};

// The positive user_agent patterns of every rule, in rule order (what a `map` would list).
void collect_ua_patterns(const Condition& condition, bool negated, std::vector<UaPattern>& out) {
  if (condition.kind == ConditionKind::kUserAgent && !negated) {
    for (const PatternConfig& pattern : condition.patterns) {
      UaPattern ua;
      ua.caseless = !pattern.case_sensitive;
      if (pattern.kind == PatternConfig::Kind::kToken && !pattern.text.empty()) {
        ua.regex = token_regex(pattern.text);
        ua.literal = escape_literal(pattern.text);
        ua.token_length = static_cast<unsigned>(pattern.text.size());
        ua.before = continues_token(pattern.text.front());
        ua.after = continues_token(pattern.text.back());
      } else {
        ua.regex = pattern.text;
      }
      out.push_back(std::move(ua));
    }
  }
  bool child_negated = negated != (condition.kind == ConditionKind::kNot);
  for (const Condition& child : condition.children) collect_ua_patterns(child, child_negated, out);
}

std::size_t count_cidrs(const Condition& condition) {
  std::size_t n = condition.kind == ConditionKind::kRemoteAddress ? condition.cidrs.size() : 0;
  for (const Condition& child : condition.children) n += count_cidrs(child);
  return n;
}

// ---- Temp directory with the generated YAML files ---------------------------------------------

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "crawlgate-rules-bench-XXXXXX").string();
    if (!mkdtemp(pattern.data())) die("cannot create a temp directory");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

  fs::path write(const std::string& name, const std::string& text) const {
    fs::path file = path_ / name;
    std::ofstream out(file);
    out << text;
    if (!out) die("cannot write " + file.string());
    return file;
  }

 private:
  fs::path path_;
};

// A few blocks that look like a crawler operator's published ranges; none holds the client.
const char* const kCidrRule = R"(
  - name: bench-cidr-crawler-ranges
    class: ai_training
    remote_addresses: [20.171.206.0/24, 20.171.207.0/24, 52.230.152.0/24, 52.233.106.0/24,
                       4.227.36.0/25, 20.125.66.80/28, 40.84.180.224/28, 23.98.142.176/28,
                       172.182.193.224/28, 172.182.202.0/25, 172.203.190.128/28, 13.65.240.240/28,
                       51.8.102.0/24, 198.51.100.0/28, 2600:1f28:365:80b0::/60,
                       2a03:2880:f800::/48]
)";

std::string include_line(const std::vector<std::string>& files) {
  std::string line = "include: [";
  for (std::size_t i = 0; i < files.size(); ++i) {
    line += (i ? ", '" : "'") + files[i] + "'";
  }
  return line + "]\n";
}

// ---- Synthetic rules ---------------------------------------------------------------------------

class Lcg {
 public:
  explicit Lcg(uint64_t seed) : state_(seed) {}
  uint32_t next() {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<uint32_t>(state_ >> 33);
  }
  uint32_t below(uint32_t n) { return next() % n; }

 private:
  uint64_t state_;
};

struct SyntheticCounts {
  std::size_t ua_patterns = 0, path_patterns = 0, header_patterns = 0, cidrs = 0;
  std::size_t absent_rules = 0, not_rules = 0, cidr_rules = 0;
};

// Generates rules of each kind. Names and blocks are checked not to match either request, and a
// generator (with its forks) never repeats a User-Agent name.
class SyntheticRules {
 public:
  SyntheticRules(uint64_t seed, std::string prefix, std::vector<std::string> avoid_lower,
                 IpAddress client)
      : rng_(seed), prefix_(std::move(prefix)), avoid_(std::move(avoid_lower)), client_(client) {}

  // A new generator that also avoids every User-Agent name this one has used.
  SyntheticRules fork(uint64_t seed, std::string prefix) const {
    SyntheticRules gen(seed, std::move(prefix), avoid_, client_);
    gen.used_ = used_;
    return gen;
  }

  // User-Agent rules: 3/4 {token: …}, 1/4 regexes. With absent_every = k, rule i % k == 0 also
  // needs Accept-Language: {absent: true} (a token only suspicious without it).
  void ua_rules(std::size_t n, std::size_t absent_every) {
    for (std::size_t i = 0; i < n; ++i) {
      std::string name = fresh_name();
      rule_head("ua");
      switch (i % 12) {
        case 9:
          out_ << "    user_agent: ['" << escape_literal(name) << "/\\d+\\.\\d+']\n";
          break;
        case 10:
          out_ << "    user_agent: [{regex: '^" << escape_literal(name)
               << "[ /]', case_sensitive: true}]\n";
          break;
        case 11:
          out_ << "    user_agent: ['compatible; " << escape_literal(name) << "']\n";
          break;
        default:
          out_ << "    user_agent: [{token: '" << name << "'}]\n";
      }
      if (absent_every && i % absent_every == 0) {
        out_ << "    headers: {Accept-Language: {absent: true}}\n";
        ++counts.absent_rules;
      }
      ++counts.ua_patterns;
    }
  }

  // Path regexes, numbered from `first`; with not_every = k, rule i % k == 0 only counts when the
  // User-Agent is not a known good client (a `not: {user_agent}`, one more UA pattern).
  void path_rules(std::size_t n, std::size_t first, std::size_t not_every) {
    static const char* const kWords[] = {"export", "dump", "feed", "api", "raw", "mirror", "scrape"};
    for (std::size_t k = 0; k < n; ++k) {
      std::size_t i = first + k;
      std::string word = kWords[rng_.below(std::size(kWords))] + std::to_string(i);
      rule_head("path");
      switch (k % 4) {
        case 0: out_ << "    path: ['^/synthetic/" << word << "/']\n"; break;
        case 1: out_ << "    path: ['[?&]" << word << "=']\n"; break;
        case 2: out_ << "    path: ['\\." << word << "$']\n"; break;
        default: out_ << "    path: ['^/w/index\\.php\\?.*action=" << word << "']\n";
      }
      if (not_every && k % not_every == 0) {
        out_ << "    not: {user_agent: [{token: '" << fresh_name() << "'}]}\n";
        ++counts.not_rules;
        ++counts.ua_patterns;
      }
      ++counts.path_patterns;
    }
  }

  // Header regexes over seven header names (From, Via, X-Requested-With, Accept-Language,
  // sec-ch-ua, Accept, Referer, in turn), numbered from `first`.
  void header_rules(std::size_t n, std::size_t first) {
    for (std::size_t k = 0; k < n; ++k) {
      std::size_t i = first + k;
      rule_head("header");
      switch (k % 7) {
        case 0: out_ << "    headers: {From: ['^crawler" << i << "@synth\\.example$']}\n"; break;
        case 1: out_ << "    headers: {Via: ['synthproxy" << i << "']}\n"; break;
        case 2: out_ << "    headers: {X-Requested-With: ['^com\\.synth" << i << "\\.app$']}\n"; break;
        case 3: out_ << "    headers: {Accept-Language: ['^x-synth" << i << "(?:[,;]|$)']}\n"; break;
        case 4: out_ << "    headers: {sec-ch-ua: ['\"SynthBrowser" << i << "\";v=']}\n"; break;
        case 5: out_ << "    headers: {Accept: ['^application/x-synth" << i << "\\+json']}\n"; break;
        default: out_ << "    headers: {Referer: ['^https?://spam" << i << "\\.synth\\.example/']}\n";
      }
      ++counts.header_patterns;
    }
  }

  // A rule that holds with no matched leaf: evaluated on every request.
  void host_absent_rule() {
    out_ << "  - name: " << prefix_ << "-no-host\n    action: deny\n"
         << "    headers: {Host: {absent: true}}\n";
    ++counts.absent_rules;
  }

  // `rules` rules of 1-3 blocks each, IPv4 and IPv6, a quarter of the IPv4 ones in the client's
  // /16 (so the tree walk goes deep), none holding the client.
  void cidr_rules(int rules) {
    for (int i = 0; i < rules; ++i) {
      rule_head("cidr");
      out_ << "    remote_addresses: [";
      int blocks = 1 + static_cast<int>(rng_.below(3));
      for (int b = 0; b < blocks;) {
        std::string text;
        if (rng_.below(4) == 0) {
          unsigned len = 32 + 4 * rng_.below(9);
          char buf[64];
          std::snprintf(buf, sizeof buf, "2%03x:%x:%x::", rng_.below(0x1000), rng_.below(0x10000),
                        rng_.below(0x10000));
          auto address = IpAddress::parse(buf);
          text = address->masked(len).to_string() + "/" + std::to_string(len);
        } else {
          unsigned len = 16 + rng_.below(17);
          uint32_t value = rng_.below(4) == 0 ? (198u << 24 | 51u << 16 | rng_.below(65536))
                                              : (1u + rng_.below(223)) << 24 | rng_.below(1u << 24);
          text = IpAddress::v4(value).masked(len).to_string() + "/" + std::to_string(len);
        }
        auto cidr = Cidr::parse(text);
        if (!cidr || cidr->contains(client_)) continue;
        out_ << (b ? ", " : "") << text;
        ++b;
        ++counts.cidrs;
      }
      out_ << "]\n";
      ++counts.cidr_rules;
    }
  }

  // The rules generated since the last reseed, as a YAML file.
  std::string yaml(const std::string& comment) const {
    return "# Generated by rules_bench: " + comment + "\nrules:\n" + out_.str();
  }

  SyntheticCounts counts;

 private:
  std::string fresh_name() {
    static const char* const kSyllables[] = {
        "ka",  "zu",  "mor", "vex", "tri", "lo",  "quan", "pel", "dra", "xi",  "nob", "ret",
        "sul", "fin", "gor", "ba",  "vin", "tos", "lum",  "wer", "cy",  "jo",  "hal", "priz",
        "ost", "yan", "ful", "dex", "kri", "um",  "sab",  "eth", "rol", "nix", "var", "gle"};
    static const char* const kSuffixes[] = {"Bot",   "bot",      "Crawler", "Spider", "-Fetcher",
                                            "Agent", "-Scraper", "Indexer", "",       "Archiver"};
    while (true) {
      std::string name;
      int syllables = 2 + static_cast<int>(rng_.below(2));
      for (int i = 0; i < syllables; ++i) name += kSyllables[rng_.below(std::size(kSyllables))];
      name[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(name[0])));
      name += kSuffixes[rng_.below(std::size(kSuffixes))];
      if (rng_.below(4) == 0) name += std::to_string(rng_.below(100));
      std::string lower = name;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      bool clash = !used_.insert(lower).second;
      for (const std::string& avoid : avoid_) clash = clash || avoid.find(lower) != avoid.npos;
      if (!clash) return name;
    }
  }
  void rule_head(const char* kind) {
    static const char* const kClasses[] = {"seo",         "scanner",      "ai_data",
                                           "monitor",     "feed_reader",  "ai_training",
                                           "http_library", "archiver"};
    out_ << "  - name: " << prefix_ << "-" << kind << "-" << n_++
         << "\n    class: " << kClasses[rng_.below(std::size(kClasses))] << "\n";
  }

  Lcg rng_;
  std::string prefix_;
  std::vector<std::string> avoid_;
  IpAddress client_;
  std::set<std::string> used_;
  std::size_t n_ = 0;
  std::ostringstream out_;
};

// The previous 5,000 set's extras ("5000-heavy"): about `extra_patterns` patterns, 83% User-Agent,
// 11% path, 6% header regexes, plus 71 absent rules and 602 CIDR blocks in 300 rules. Its non-UA
// kinds grow with the set while the 160 / 1,500 sets have none, so it does not measure growth with
// the pattern count; it is kept to show the cost of those kinds at scale.
std::string heavy_rules(std::size_t extra_patterns, SyntheticRules& gen) {
  std::size_t ua = extra_patterns * 83 / 100;
  std::size_t path = extra_patterns * 11 / 100;
  std::size_t header = extra_patterns - ua - path;
  gen.ua_rules(ua, 40);
  gen.path_rules(path, 0, 20);
  gen.header_rules(header, 0);
  gen.host_absent_rule();
  gen.cidr_rules(300);
  return gen.yaml("the 5000-heavy extras");
}

// ---- Requests -----------------------------------------------------------------------------------

class OwnedRequest {
 public:
  OwnedRequest(std::string user_agent, int chrome_major) {
    std::string v = std::to_string(chrome_major);
    fields_ = {
        {"Host", "wiki.example.org"},
        {"sec-ch-ua", "\"Not:A-Brand\";v=\"99\", \"Google Chrome\";v=\"" + v +
                          "\", \"Chromium\";v=\"" + v + "\""},
        {"sec-ch-ua-mobile", "?0"},
        {"sec-ch-ua-platform", "\"macOS\""},
        {"Upgrade-Insecure-Requests", "1"},
        {"User-Agent", std::move(user_agent)},
        {"Accept",
         "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
         "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"},
        {"Sec-Fetch-Site", "none"},
        {"Sec-Fetch-Mode", "navigate"},
        {"Sec-Fetch-User", "?1"},
        {"Sec-Fetch-Dest", "document"},
        {"Accept-Encoding", "gzip, deflate, br, zstd"},
        {"Accept-Language", "en-US,en;q=0.9"},
    };
    for (const auto& [name, value] : fields_) headers_.push_back({name, value});
    view_.method = "GET";
    view_.target = kTarget;
    view_.version = 11;
    view_.headers = headers_;
    view_.client_ip = *IpAddress::parse(kClientAddress);
    view_.peer_ip = view_.client_ip;
  }
  OwnedRequest(const OwnedRequest&) = delete;
  OwnedRequest& operator=(const OwnedRequest&) = delete;

  const RequestView& view() const { return view_; }
  std::string_view user_agent() const { return view_.header("User-Agent"); }

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
  std::vector<HeaderField> headers_;
  RequestView view_;
};

// The heaviest Chrome row of browser-uas.tsv (weight, device, user_agent).
std::string pick_browser_user_agent(const std::string& tsv) {
  std::ifstream in(tsv);
  std::string line;
  std::string best;
  double best_weight = -1;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string weight, device, ua;
    if (!std::getline(fields, weight, '\t') || !std::getline(fields, device, '\t') ||
        !std::getline(fields, ua)) {
      continue;
    }
    if (ua.find("Chrome/") == ua.npos || ua.find("Edg") != ua.npos || ua.find("OPR/") != ua.npos ||
        device != "desktop") {
      continue;
    }
    double w = std::strtod(weight.c_str(), nullptr);
    if (w > best_weight) {
      best_weight = w;
      best = ua;
    }
  }
  if (best.empty()) {
    std::cerr << "rules_bench: no Chrome UA in " << tsv << ", using a built-in one\n";
    return std::string(kFallbackBrowserUserAgent);
  }
  return best;
}

int chrome_major(std::string_view ua) {
  auto at = ua.find("Chrome/");
  return at == ua.npos ? 145 : std::atoi(std::string(ua.substr(at + 7, 4)).c_str());
}

// ---- Baselines ----------------------------------------------------------------------------------

#ifdef CRAWLGATE_HAVE_PCRE2
class Pcre2Loop {
 public:
  explicit Pcre2Loop(const std::vector<UaPattern>& patterns) {
    for (const UaPattern& pattern : patterns) {
      int error = 0;
      PCRE2_SIZE offset = 0;
      pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.regex.data()),
                                       pattern.regex.size(), pattern.caseless ? PCRE2_CASELESS : 0,
                                       &error, &offset, nullptr);
      if (!code) {
        ++skipped_;
        continue;
      }
      if (pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) != 0) ++not_jit_;
      codes_.push_back(code);
    }
    match_data_ = pcre2_match_data_create(1, nullptr);
  }
  ~Pcre2Loop() {
    for (pcre2_code* code : codes_) pcre2_code_free(code);
    pcre2_match_data_free(match_data_);
  }
  Pcre2Loop(const Pcre2Loop&) = delete;
  Pcre2Loop& operator=(const Pcre2Loop&) = delete;

  // Index of the first matching pattern, or -1.
  long first_match(std::string_view subject) const {
    auto data = reinterpret_cast<PCRE2_SPTR>(subject.data());
    for (std::size_t i = 0; i < codes_.size(); ++i) {
      int rc = pcre2_jit_match(codes_[i], data, subject.size(), 0, 0, match_data_, nullptr);
      if (rc == PCRE2_ERROR_JIT_BADOPTION) {  // not JIT-compiled: the interpreter
        rc = pcre2_match(codes_[i], data, subject.size(), 0, 0, match_data_, nullptr);
      }
      if (rc >= 0) return static_cast<long>(i);
    }
    return -1;
  }
  std::size_t compiled() const { return codes_.size(); }
  std::size_t skipped() const { return skipped_; }
  std::size_t not_jit() const { return not_jit_; }

 private:
  std::vector<pcre2_code*> codes_;
  pcre2_match_data* match_data_ = nullptr;
  std::size_t skipped_ = 0;
  std::size_t not_jit_ = 0;
};
#endif

class StdRegexLoop {
 public:
  // Patterns std::regex refuses, or that throw while searching `probes`, are skipped.
  StdRegexLoop(const std::vector<UaPattern>& patterns, const std::vector<std::string_view>& probes) {
    for (const UaPattern& pattern : patterns) {
      try {
        auto flags = std::regex::ECMAScript | std::regex::optimize;
        if (pattern.caseless) flags |= std::regex::icase;
        std::regex regex(pattern.regex, flags);
        for (std::string_view probe : probes) {
          (void)std::regex_search(probe.begin(), probe.end(), regex);
        }
        regexes_.push_back(std::move(regex));
      } catch (const std::regex_error&) {
        ++skipped_;
      }
    }
  }
  long first_match(std::string_view subject) const {
    for (std::size_t i = 0; i < regexes_.size(); ++i) {
      if (std::regex_search(subject.begin(), subject.end(), regexes_[i])) {
        return static_cast<long>(i);
      }
    }
    return -1;
  }
  std::size_t compiled() const { return regexes_.size(); }
  std::size_t skipped() const { return skipped_; }

 private:
  std::vector<std::regex> regexes_;
  std::size_t skipped_ = 0;
};

// Hyperscan over the UA patterns alone, in the engine's form (tokens as literals, boundaries
// checked in the callback): the floor for the User-Agent part of evaluate.
class HyperscanUaOnly {
 public:
  explicit HyperscanUaOnly(const std::vector<UaPattern>& patterns) : patterns_(&patterns) {
    std::vector<const char*> expressions;
    std::vector<unsigned> flags;
    std::vector<unsigned> ids;
    for (std::size_t i = 0; i < patterns.size(); ++i) {
      const UaPattern& pattern = patterns[i];
      bool token = !pattern.literal.empty();
      expressions.push_back(token ? pattern.literal.c_str() : pattern.regex.c_str());
      flags.push_back((token ? 0 : HS_FLAG_SINGLEMATCH) | HS_FLAG_ALLOWEMPTY |
                      (pattern.caseless ? HS_FLAG_CASELESS : 0));
      ids.push_back(static_cast<unsigned>(i));
    }
    hs_compile_error_t* error = nullptr;
    if (hs_compile_multi(expressions.data(), flags.data(), ids.data(),
                         static_cast<unsigned>(expressions.size()), HS_MODE_BLOCK, nullptr,
                         &database_, &error) != HS_SUCCESS) {
      die(std::string("hs_compile_multi: ") + (error && error->message ? error->message : "?"));
    }
    if (hs_alloc_scratch(database_, &scratch_) != HS_SUCCESS) die("hs_alloc_scratch");
  }
  ~HyperscanUaOnly() {
    hs_free_scratch(scratch_);
    hs_free_database(database_);
  }
  HyperscanUaOnly(const HyperscanUaOnly&) = delete;
  HyperscanUaOnly& operator=(const HyperscanUaOnly&) = delete;

  // Lowest matching pattern id, or -1.
  long lowest_match(std::string_view subject) const {
    struct Context {
      const std::vector<UaPattern>* patterns;
      std::string_view subject;
      long lowest = -1;
    } context{patterns_, subject};
    hs_scan(
        database_, subject.data(), static_cast<unsigned>(subject.size()), 0, scratch_,
        [](unsigned id, unsigned long long, unsigned long long to, unsigned, void* raw) {
          auto& c = *static_cast<Context*>(raw);
          const UaPattern& p = (*c.patterns)[id];
          if (p.before && to > p.token_length && continues_token(c.subject[to - p.token_length - 1])) {
            return 0;
          }
          if (p.after && to < c.subject.size() && continues_token(c.subject[to])) return 0;
          if (c.lowest < 0 || static_cast<long>(id) < c.lowest) c.lowest = id;
          return 0;
        },
        &context);
    return context.lowest;
  }

 private:
  const std::vector<UaPattern>* patterns_;
  hs_database_t* database_ = nullptr;
  hs_scratch_t* scratch_ = nullptr;
};

// ---- One rule-set size --------------------------------------------------------------------------

struct Fixture {
  std::string label;  // "160", "1500", "5000"
  std::shared_ptr<const Config> config;
  std::shared_ptr<const RuleSet> rule_set;
  std::vector<UaPattern> ua_patterns;
  std::size_t cidrs = 0;
  std::unique_ptr<HyperscanUaOnly> hyperscan;
#ifdef CRAWLGATE_HAVE_PCRE2
  std::unique_ptr<Pcre2Loop> pcre2;
#endif
  std::unique_ptr<StdRegexLoop> std_regex;
};

std::unique_ptr<Fixture> load_fixture(const std::string& label, const fs::path& main_file,
                                      const std::vector<std::string_view>& probes,
                                      bool loops = true) {
  auto fixture = std::make_unique<Fixture>();
  fixture->label = label;
  LoadResult loaded = load_config_file(main_file.string());
  if (!loaded.ok()) {
    for (const ConfigError& error : loaded.errors) std::cerr << error.to_string() << "\n";
    die("cannot load " + main_file.string());
  }
  fixture->config = loaded.config;
  CompileResult compiled = RuleSet::compile(*loaded.config);
  if (!compiled.ok()) {
    for (const ConfigError& error : compiled.errors) std::cerr << error.to_string() << "\n";
    die("cannot compile the " + label + " set");
  }
  fixture->rule_set = compiled.rule_set;
  for (const RuleConfig& rule : loaded.config->rules) {
    collect_ua_patterns(rule.condition, false, fixture->ua_patterns);
    fixture->cidrs += count_cidrs(rule.condition);
  }
  fixture->hyperscan = std::make_unique<HyperscanUaOnly>(fixture->ua_patterns);
  std::cerr << "set " << label << ": " << fixture->rule_set->rule_count() << " rules, "
            << fixture->rule_set->pattern_count() << " Hyperscan patterns ("
            << fixture->ua_patterns.size() << " User-Agent), " << fixture->cidrs << " CIDR blocks";
  if (!loops) {
    std::cerr << "\n";
    return fixture;
  }
#ifdef CRAWLGATE_HAVE_PCRE2
  fixture->pcre2 = std::make_unique<Pcre2Loop>(fixture->ua_patterns);
  std::cerr << "; PCRE2: " << fixture->pcre2->skipped() << " refused, "
            << fixture->pcre2->not_jit() << " without JIT";
#endif
  fixture->std_regex = std::make_unique<StdRegexLoop>(fixture->ua_patterns, probes);
  std::cerr << "; std::regex: " << fixture->std_regex->skipped() << " of "
            << fixture->ua_patterns.size() << " refused (skipped)\n";
  return fixture;
}

void set_counters(benchmark::State& state, const Fixture& fixture) {
  state.counters["patterns"] = static_cast<double>(fixture.rule_set->pattern_count());
  state.counters["ua_patterns"] = static_cast<double>(fixture.ua_patterns.size());
  state.counters["rules"] = static_cast<double>(fixture.rule_set->rule_count());
  state.counters["cidrs"] = static_cast<double>(fixture.cidrs);
}

void register_benchmarks(const Fixture& fixture, const OwnedRequest& request, const char* kind,
                         bool expect_match) {
  const std::string suffix = "/" + fixture.label + "/" + kind;
  const Fixture* f = &fixture;
  const OwnedRequest* r = &request;

  benchmark::RegisterBenchmark(("BM_RuleSet" + suffix).c_str(), [f, r, expect_match](
                                                                     benchmark::State& state) {
    MatchScratch scratch;  // one per thread, reused across requests as in the proxy
    Decision first = f->rule_set->evaluate(r->view(), scratch);
    if (first.matched() != expect_match) {
      state.SkipWithError(expect_match ? "no rule matched the bot request"
                                       : "a rule matched the browser request");
      return;
    }
    for (auto _ : state) {
      Decision decision = f->rule_set->evaluate(r->view(), scratch);
      benchmark::DoNotOptimize(decision);
    }
    set_counters(state, *f);
    state.counters["winner"] = first.matched() ? static_cast<double>(first.rule_index) : -1;
  });

  benchmark::RegisterBenchmark(("BM_HyperscanUaOnly" + suffix).c_str(),
                               [f, r](benchmark::State& state) {
                                 std::string_view ua = r->user_agent();
                                 long first = f->hyperscan->lowest_match(ua);
                                 for (auto _ : state) {
                                   long match = f->hyperscan->lowest_match(ua);
                                   benchmark::DoNotOptimize(match);
                                 }
                                 set_counters(state, *f);
                                 state.counters["first_match"] = static_cast<double>(first);
                               });

  if (!fixture.std_regex) return;  // 5000-heavy: evaluate only

#ifdef CRAWLGATE_HAVE_PCRE2
  benchmark::RegisterBenchmark(("BM_Pcre2Loop" + suffix).c_str(), [f, r](benchmark::State& state) {
    std::string_view ua = r->user_agent();
    long first = f->pcre2->first_match(ua);
    for (auto _ : state) {
      long match = f->pcre2->first_match(ua);
      benchmark::DoNotOptimize(match);
    }
    set_counters(state, *f);
    state.counters["first_match"] = static_cast<double>(first);
    state.counters["refused"] = static_cast<double>(f->pcre2->skipped());
  });
#endif

  // std::regex costs milliseconds per request at 1,500 patterns: a fixed, small iteration count.
  auto* std_regex = benchmark::RegisterBenchmark(
      ("BM_StdRegexLoop" + suffix).c_str(), [f, r](benchmark::State& state) {
        std::string_view ua = r->user_agent();
        long first = f->std_regex->first_match(ua);
        for (auto _ : state) {
          long match = f->std_regex->first_match(ua);
          benchmark::DoNotOptimize(match);
        }
        set_counters(state, *f);
        state.counters["first_match"] = static_cast<double>(first);
        state.counters["refused"] = static_cast<double>(f->std_regex->skipped());
      });
  std_regex->Iterations(fixture.ua_patterns.size() < 500 ? 200 : 20);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string rules_dir = env_or("CRAWLGATE_DEFAULT_RULES", CRAWLGATE_DEFAULT_RULES);
  const std::string shared_data = env_or("CRAWLGATE_SHARED_DATA", CRAWLGATE_SHARED_DATA);

  const std::string browser_ua =
      pick_browser_user_agent(shared_data + "/browser-user-agents/browser-uas.tsv");
  const int major = chrome_major(browser_ua);
  OwnedRequest bot{std::string(kBotUserAgent), major};
  OwnedRequest browser{browser_ua, major};
  std::cerr << "bot UA:     " << kBotUserAgent << "\nbrowser UA: " << browser_ua << "\n";
  std::vector<std::string_view> probes = {bot.user_agent(), browser.user_agent()};

  TempDir dir;
  const std::string classes = rules_dir + "/classes.yaml";
  const std::string ai = rules_dir + "/ai-crawlers.yaml";
  const std::string known = rules_dir + "/known-bots.yaml";
  std::vector<std::string> avoid;
  for (std::string_view ua : probes) {
    std::string lower(ua);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    avoid.push_back(lower);
  }
  const IpAddress client = *IpAddress::parse(kClientAddress);
  auto total = [](const SyntheticCounts& c) {
    return c.ua_patterns + c.path_patterns + c.header_patterns;
  };
  auto describe = [](const std::string& what, const SyntheticCounts& c) {
    std::cerr << what << ": " << c.ua_patterns << " User-Agent, " << c.path_patterns << " path, "
              << c.header_patterns << " header patterns, " << c.absent_rules << " absent rules, "
              << c.not_rules << " not rules, " << c.cidrs << " CIDR blocks in " << c.cidr_rules
              << " rules\n";
  };

  // The same fixed block in every set, so that all of them carry the same mix of field kinds:
  // 8 path regexes (2 with a `not: {user_agent}`), 14 header regexes (2 for each of 7 names),
  // 6 User-Agent tokens that also need Accept-Language: {absent: true}, one Host: {absent: true}
  // rule, 24 CIDR rules, plus kCidrRule (16 blocks).
  SyntheticRules fixed_gen(0xf17ed, "fixed", avoid, client);
  fixed_gen.path_rules(8, 100000, 4);
  fixed_gen.header_rules(14, 100000);
  fixed_gen.ua_rules(6, 1);
  fixed_gen.host_absent_rule();
  fixed_gen.cidr_rules(24);
  const SyntheticCounts fixed_counts = fixed_gen.counts;
  const std::string fixed =
      dir.write("fixed.yaml", fixed_gen.yaml("the block every set carries") + kCidrRule).string();
  describe("fixed block (every set)", fixed_counts);

  // What differs between the sets: User-Agent and path patterns, about 10 path per 100 UA
  // (1 in 20 path rules with a `not: {user_agent}`). 160 and 1,500 take their UA patterns from
  // the default rule set; 5,000 adds synthetic UA rules.
  auto scaled = [&](const std::string& label, std::size_t ua, std::size_t path) {
    SyntheticRules gen = fixed_gen.fork(0x5ca1ed + ua * 7919 + path, "scaled" + label);
    gen.ua_rules(ua, 0);
    gen.path_rules(path, 0, 20);
    describe("scaled part of " + label, gen.counts);
    return std::make_pair(dir.write("scaled-" + label + ".yaml", gen.yaml("set " + label)).string(),
                          gen.counts);
  };

  std::vector<std::unique_ptr<Fixture>> fixtures;
  auto [scaled160, counts160] = scaled("160", 0, 16);
  fixtures.push_back(load_fixture(
      "160", dir.write("set-160.yaml", include_line({classes, ai, fixed, scaled160})), probes));
  auto [scaled1500, counts1500] = scaled("1500", 0, 150);
  fixtures.push_back(load_fixture(
      "1500", dir.write("set-1500.yaml", include_line({classes, ai, known, fixed, scaled1500})),
      probes));
  // The default rule set's own patterns; then synthetic UA rules up to ~5,000 patterns in all.
  const std::size_t defaults =
      fixtures.back()->rule_set->pattern_count() - total(fixed_counts) - total(counts1500);
  const std::size_t path5000 = 500;
  const std::size_t others = total(fixed_counts) + path5000 + path5000 / 20;
  const std::size_t ua5000 = 5000 > defaults + others ? 5000 - defaults - others : 0;
  auto [scaled5000, counts5000] = scaled("5000", ua5000, path5000);
  fixtures.push_back(load_fixture(
      "5000", dir.write("set-5000.yaml", include_line({classes, ai, known, fixed, scaled5000})),
      probes));

  // The previous, unlike 5,000 set: its extra field kinds grow with it (see heavy_rules).
  SyntheticRules heavy_gen(0x5eed, "synth", avoid, client);
  fs::path heavy =
      dir.write("heavy.yaml", heavy_rules(defaults < 5000 ? 5000 - defaults : 0, heavy_gen));
  describe("5000-heavy extras", heavy_gen.counts);
  fixtures.push_back(load_fixture(
      "5000-heavy",
      dir.write("set-5000-heavy.yaml",
                include_line({classes, ai, known, heavy.string()}) + "rules:" + kCidrRule),
      probes, /*loops=*/false));

  for (const auto& fixture : fixtures) {
    register_benchmarks(*fixture, bot, "bot", true);
    register_benchmarks(*fixture, browser, "browser", false);
  }

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
