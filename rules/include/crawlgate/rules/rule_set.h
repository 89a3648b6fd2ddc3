// The compiled, immutable form of a Config's rules. The regexes of all rules are compiled into one
// Hyperscan database per request field (User-Agent, target, each header some rule names); each
// field is scanned once per request, whatever the number of rules. remote_addresses use one
// prefix-tree lookup, methods one table lookup. Request header names are found with one hashed
// lookup each; {present}/{absent} tests read a per-header "seen" flag instead of being marked one
// by one, so their cost does not grow with their number. Only rules with a matched leaf (plus the
// few that can hold with none) are then evaluated, in rule order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crawlgate/rules/config.h"
#include "crawlgate/rules/request_view.h"

struct hs_database;
struct hs_scratch;

namespace crawlgate {

struct HsDatabaseDeleter {
  void operator()(hs_database* database) const;
};
struct HsScratchDeleter {
  void operator()(hs_scratch* scratch) const;
};
using HsDatabasePtr = std::unique_ptr<hs_database, HsDatabaseDeleter>;
using HsScratchPtr = std::unique_ptr<hs_scratch, HsScratchDeleter>;

// One matching rule. The string views point into the RuleSet, which must outlive them.
struct RuleMatch {
  uint32_t rule_index = 0;
  std::string_view rule_name;
  std::string_view class_name;  // "" for a rule that gives only an action
  Action action = Action::kAllow;
  bool enforced = true;
  int deny_status = 403;
  std::string_view deny_body;
};

// The outcome for one request. The winner is the lowest-index matching rule with enforce: true;
// when none matches, the lowest-index matching shadow-mode rule (enforced == false: log and count
// it, let the request through). Shadow rules never hide enforced rules after them.
struct Decision {
  static constexpr uint32_t kNoRule = UINT32_MAX;
  uint32_t rule_index = kNoRule;
  std::string_view rule_name;
  std::string_view class_name;
  Action action = Action::kAllow;
  bool enforced = false;
  int deny_status = 0;
  std::string_view deny_body;
  // The first shadow-mode rule that matched before an enforced winner (kNoRule when none, or when
  // the winner is itself a shadow rule): what a shadow rule would have changed.
  uint32_t shadow_rule_index = kNoRule;

  bool matched() const { return rule_index != kNoRule; }
};

class RuleSet;

// Per-thread working memory for RuleSet::evaluate. Bound lazily to one compiled RuleSet (by its
// generation number) and rebuilt when a different RuleSet is evaluated, e.g. after a reload.
class MatchScratch {
 public:
  MatchScratch();
  ~MatchScratch();
  MatchScratch(MatchScratch&&) noexcept;
  MatchScratch& operator=(MatchScratch&&) noexcept;
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;

 private:
  friend class RuleSet;
  uint64_t generation_ = 0;
  HsScratchPtr hs_scratch_;
  std::vector<uint32_t> header_epoch_;  // per header slot (+ User-Agent): == epoch_ once seen
  std::vector<uint32_t> leaf_epoch_;    // per leaf: == epoch_ when it matched this request
  std::vector<uint32_t> rule_epoch_;    // per rule: == epoch_ when already a candidate
  std::vector<uint32_t> candidates_;    // rules with a matched positive leaf, this request
  uint32_t epoch_ = 0;
};

struct CompileResult;

// `text` escaped for Hyperscan (every byte but letters, digits and '_'), so it matches literally:
// the form `{token: X}` compiles to. Public for the benchmark's baselines.
std::string escape_literal(std::string_view text);

class RuleSet {
 public:
  ~RuleSet();

  // Compiles all rules of `config`. Every bad pattern is reported, each with its file:line.
  static CompileResult compile(const Config& config);

  // The first matching rule (see Decision). Thread-safe with one MatchScratch per thread.
  Decision evaluate(const RequestView& request, MatchScratch& scratch) const;

  // Every matching rule in rule order, enforced or not (for `crawlgate explain`).
  std::vector<RuleMatch> explain(const RequestView& request, MatchScratch& scratch) const;
  std::vector<RuleMatch> explain(const RequestView& request) const;

  std::size_t rule_count() const { return rules_.size(); }
  std::size_t pattern_count() const { return patterns_.size(); }
  RuleMatch rule(uint32_t index) const;
  // Unique per compiled RuleSet in this process; MatchScratch is keyed by it.
  uint64_t generation() const { return generation_; }

 private:
  struct Rule {
    std::string name;
    std::string class_name;
    Action action;
    bool enforced;
    int deny_status;
    std::string deny_body;
    uint32_t root;  // index into nodes_
  };
  // kHeader: "this header is present" ({present: true}; {absent: true} is kNot over it).
  enum class Op : uint8_t { kLeaf, kAll, kAny, kNot, kHeader };
  struct Node {
    Op op;
    uint32_t first;  // kLeaf: the leaf id; kHeader: the header slot; else the first of children_
    uint32_t count;  // number of children
  };
  struct Pattern {
    uint32_t first_leaf;  // range in pattern_leaves_: identical patterns share one Hyperscan id
    uint32_t leaf_count;
    // {token: …} patterns are compiled as plain literals (every occurrence reported) and their
    // token boundaries checked in on_match: kBoundaryBefore / kBoundaryAfter, and the length.
    uint32_t token_length = 0;
    uint8_t boundary = 0;
  };
  static constexpr uint8_t kBoundaryBefore = 1;
  static constexpr uint8_t kBoundaryAfter = 2;
  struct HeaderSlot {
    std::string name;                     // lower-case
    HsDatabasePtr database;               // the header's regexes, or null
    std::vector<uint32_t> present_rules;  // rules a {present} test can make true (sorted, unique)
  };
  // Open-addressing table from a header name to its slot in headers_ (or user_agent_slot_).
  struct NameEntry {
    uint32_t key = 0;         // name_key() of the lower-case name
    uint32_t slot = kNoSlot;  // kNoSlot: empty
  };
  static constexpr uint32_t kNoSlot = UINT32_MAX;
  static constexpr uint32_t kTriggerBit = 0x80000000u;
  class CidrTree;
  friend class RuleSetBuilder;

  RuleSet();
  void prepare(MatchScratch& scratch) const;
  // Scans the request and marks matched leaves; fills scratch.candidates_ (unsorted).
  void mark_leaves(const RequestView& request, MatchScratch& scratch) const;
  void scan(const hs_database* database, std::string_view value, MatchScratch& scratch) const;
  void mark_leaf(uint32_t leaf, MatchScratch& scratch) const;
  void add_candidate(uint32_t rule, MatchScratch& scratch) const;
  // The slot of a request header name, or kNoSlot when no rule needs it.
  uint32_t find_slot(std::string_view name) const;
  static uint32_t name_key(std::string_view name);
  void build_name_table();
  bool holds(uint32_t node, const MatchScratch& scratch) const;
  // The value of a condition tree when none of its leaves matched.
  bool holds_when_nothing_matched(uint32_t node) const;
  // Calls `visit(rule)` for each rule that may match, in rule order, until it returns false.
  template <typename Visit>
  void for_each_candidate(MatchScratch& scratch, Visit&& visit) const;
  static int on_match(unsigned int id, unsigned long long from, unsigned long long to,
                      unsigned int flags, void* context);

  uint64_t generation_ = 0;
  std::vector<Rule> rules_;
  std::vector<Node> nodes_;
  std::vector<uint32_t> children_;
  // leaf id -> rule index, | kTriggerBit when the leaf is under an even number of `not`s
  std::vector<uint32_t> leaf_info_;
  std::vector<Pattern> patterns_;    // Hyperscan id -> leaves
  std::vector<uint32_t> pattern_leaves_;
  std::vector<uint32_t> always_rules_;  // rules that can hold with no matched leaf, sorted
  HsDatabasePtr user_agent_database_;
  HsDatabasePtr target_database_;
  std::vector<HeaderSlot> headers_;
  uint32_t user_agent_slot_ = 0;  // headers_ index of "user-agent", or headers_.size()
  std::vector<std::string> slot_names_;  // per slot incl. user_agent_slot_, lower-case
  std::vector<NameEntry> name_table_;    // size a power of two
  uint32_t name_shift_ = 0;
  uint64_t name_lengths_ = 0;  // bit min(length, 63) set for each slot name
  std::vector<std::pair<std::string, std::vector<uint32_t>>> method_leaves_;  // sorted by method
  HsScratchPtr prototype_scratch_;
  std::unique_ptr<CidrTree> cidr_tree_;
};

struct CompileResult {
  std::shared_ptr<const RuleSet> rule_set;
  std::vector<ConfigError> errors;
  bool ok() const { return errors.empty() && rule_set; }
};

}  // namespace crawlgate
