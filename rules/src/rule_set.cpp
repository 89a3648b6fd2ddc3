#include "crawlgate/rules/rule_set.h"

#include <hs/hs.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstring>
#include <functional>
#include <map>
#include <utility>

namespace crawlgate {

void HsDatabaseDeleter::operator()(hs_database* database) const { hs_free_database(database); }
void HsScratchDeleter::operator()(hs_scratch* scratch) const { hs_free_scratch(scratch); }

MatchScratch::MatchScratch() = default;
MatchScratch::~MatchScratch() = default;
MatchScratch::MatchScratch(MatchScratch&&) noexcept = default;
MatchScratch& MatchScratch::operator=(MatchScratch&&) noexcept = default;

namespace {

// Each field (User-Agent, target, each header some rule names) has its own database and is scanned
// alone. A single scan over a joined buffer with field tags was measured first: Hyperscan refuses a
// ^ that follows a tag, and tag-prefixed patterns ("\x01U\n[\s\S]*(?:R)") scanned about six times
// slower than plain ones, while scanning one short value costs some 20-30 ns. Per-field scans keep
// ^ and $ meaning the value's start and end, and no match can run from one field into another.

constexpr bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}


// A product token such as GPTBot or ChatGPT-User. The characters that continue a token are
// letters, digits, '_' and '-': so GPTBot matches "GPTBot/1.1" and "(GPTBot;" but not
// "NotGPTBotty", and ChatGPT does not match "ChatGPT-User" (a different product).
//
// A token is the regex (?:^|[^A-Za-z0-9_-])TOKEN(?:$|[^A-Za-z0-9_-]) (the boundary parts only
// where the token's first / last character continues a token). It is compiled as the plain
// literal TOKEN, without HS_FLAG_SINGLEMATCH so that every occurrence is reported, and on_match
// checks the neighbouring bytes: the same matches, but Hyperscan scans a database of literals
// 2-2.6x faster than one of the boundary regexes (rules_bench, 160 and 5,000 UA patterns).
constexpr std::array<bool, 256> kContinuesToken = [] {
  std::array<bool, 256> table{};
  for (int c = 0; c < 256; ++c) table[c] = is_word_char(static_cast<char>(c)) || c == '-';
  return table;
}();

bool continues_token(char c) { return kContinuesToken[static_cast<unsigned char>(c)]; }

std::string hint_for(const std::string& message) {
  std::string lower = message;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower.find("look") != std::string::npos || lower.find("backref") != std::string::npos ||
      lower.find("back-ref") != std::string::npos || lower.find("assert") != std::string::npos) {
    return " (lookaround and back-references are not supported: express the exclusion with a "
           "`not:` condition or split the pattern)";
  }
  return {};
}

struct CompileErrorDeleter {
  void operator()(hs_compile_error_t* error) const { hs_free_compile_error(error); }
};
using CompileErrorPtr = std::unique_ptr<hs_compile_error_t, CompileErrorDeleter>;

// Returns "" when Hyperscan accepts `expression`, else its message. `can_be_empty` tells whether
// the expression matches the empty string (Hyperscan then needs HS_FLAG_ALLOWEMPTY).
std::string expression_error(const std::string& expression, unsigned flags, bool& can_be_empty) {
  hs_expr_info_t* info = nullptr;
  hs_compile_error_t* raw_error = nullptr;
  if (hs_expression_info(expression.c_str(), flags | HS_FLAG_ALLOWEMPTY, &info, &raw_error) ==
      HS_SUCCESS) {
    can_be_empty = info->min_width == 0;
    std::free(info);
    return {};
  }
  CompileErrorPtr error(raw_error);
  return error && error->message ? error->message : "rejected by Hyperscan";
}

std::atomic<uint64_t> next_generation{1};

}  // namespace

std::string escape_literal(std::string_view text) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (is_word_char(c)) {
      out += c;
    } else if (byte >= 0x21 && byte < 0x7f) {
      out += '\\';
      out += c;
    } else {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 15];
    }
  }
  return out;
}

// A path-compressed binary trie over 128-bit addresses (IPv4 as ::ffff:a.b.c.d). One walk from
// the root yields every block containing the address, whatever the number of blocks. Addresses
// and node prefixes are held as two 64-bit words, so a node costs two XOR-and-mask operations.
class RuleSet::CidrTree {
 public:
  struct Block {
    std::array<uint8_t, 16> network;
    unsigned prefix_len;  // in the 128-bit space
    bool v4;
    uint32_t leaf;
  };

  explicit CidrTree(const std::vector<Block>& blocks) {
    // Build an uncompressed trie, then keep only nodes that carry blocks or branch.
    struct Plain {
      int child[2] = {-1, -1};
      std::vector<Entry> entries;
    };
    std::vector<Plain> plain(1);
    for (const Block& block : blocks) {
      int node = 0;
      for (unsigned i = 0; i < block.prefix_len; ++i) {
        int bit = (block.network[i / 8] >> (7 - i % 8)) & 1;
        if (plain[node].child[bit] < 0) {
          plain[node].child[bit] = static_cast<int>(plain.size());
          plain.emplace_back();
        }
        node = plain[node].child[bit];
      }
      plain[node].entries.push_back({block.leaf, block.v4});
    }
    Words prefix{};
    std::function<uint32_t(int, unsigned)> emit = [&](int index, unsigned depth) -> uint32_t {
      // Skip chains of nodes that neither carry blocks nor branch.
      while (plain[index].entries.empty() && index != 0 &&
             (plain[index].child[0] < 0) != (plain[index].child[1] < 0)) {
        int bit = plain[index].child[0] < 0 ? 1 : 0;
        if (bit) set_bit(prefix, depth);
        index = plain[index].child[bit];
        ++depth;
      }
      uint32_t self = static_cast<uint32_t>(nodes_.size());
      nodes_.push_back({});
      Words mask = prefix_mask(depth);
      nodes_[self].prefix = {prefix.hi & mask.hi, prefix.lo & mask.lo};
      nodes_[self].mask = mask;
      nodes_[self].prefix_len = depth;
      nodes_[self].entries_begin = static_cast<uint32_t>(entries_.size());
      entries_.insert(entries_.end(), plain[index].entries.begin(), plain[index].entries.end());
      nodes_[self].entries_end = static_cast<uint32_t>(entries_.size());
      for (int bit = 0; bit < 2; ++bit) {
        if (plain[index].child[bit] < 0) continue;
        Words saved = prefix;
        if (bit) set_bit(prefix, depth);
        uint32_t child = emit(plain[index].child[bit], depth + 1);
        prefix = saved;
        nodes_[self].child[bit] = child;
      }
      return self;
    };
    if (!blocks.empty()) emit(0, 0);
  }

  template <typename OnLeaf>
  void lookup(const IpAddress& address, OnLeaf&& on_leaf) const {
    if (nodes_.empty()) return;
    const Words bits = to_words(address.bytes());
    const bool v4 = address.is_v4();
    uint32_t index = 0;
    while (true) {
      const TreeNode& node = nodes_[index];
      if ((((bits.hi ^ node.prefix.hi) & node.mask.hi) | ((bits.lo ^ node.prefix.lo) & node.mask.lo)) !=
          0) {
        return;
      }
      for (uint32_t i = node.entries_begin; i < node.entries_end; ++i) {
        // Families never mix: ::/0 does not cover IPv4 clients, as in Cidr::contains.
        if (entries_[i].v4 == v4) on_leaf(entries_[i].leaf);
      }
      const unsigned depth = node.prefix_len;
      if (depth >= 128) return;
      const unsigned bit = depth < 64 ? static_cast<unsigned>(bits.hi >> (63 - depth)) & 1u
                                      : static_cast<unsigned>(bits.lo >> (127 - depth)) & 1u;
      index = node.child[bit];
      if (index == kNone) return;
    }
  }

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Entry {
    uint32_t leaf;
    bool v4;
  };
  struct Words {  // a 128-bit address, most significant word first, bits in host order
    uint64_t hi = 0;
    uint64_t lo = 0;
  };
  struct TreeNode {
    Words prefix;  // already masked
    Words mask;    // the first prefix_len bits set
    unsigned prefix_len = 0;
    uint32_t child[2] = {kNone, kNone};
    uint32_t entries_begin = 0;
    uint32_t entries_end = 0;
  };

  static Words to_words(const std::array<uint8_t, 16>& bytes) {
    Words words;
    for (int i = 0; i < 8; ++i) words.hi = words.hi << 8 | bytes[i];
    for (int i = 8; i < 16; ++i) words.lo = words.lo << 8 | bytes[i];
    return words;
  }
  static void set_bit(Words& words, unsigned i) {
    if (i < 64) {
      words.hi |= uint64_t{1} << (63 - i);
    } else {
      words.lo |= uint64_t{1} << (127 - i);
    }
  }
  static Words prefix_mask(unsigned len) {
    auto top = [](unsigned n) { return n == 0 ? uint64_t{0} : ~uint64_t{0} << (64 - n); };
    return {top(std::min(len, 64u)), top(len > 64 ? std::min(len - 64, 64u) : 0u)};
  }

  std::vector<TreeNode> nodes_;
  std::vector<Entry> entries_;
};

// Turns the condition trees of a Config into the flat node arrays, the per-field Hyperscan
// databases, the method table and the CIDR blocks of a RuleSet.
class RuleSetBuilder {
 public:
  RuleSetBuilder(RuleSet& rule_set, std::vector<ConfigError>& errors)
      : set_(rule_set), errors_(errors) {}

  void add_rule(const RuleConfig& config) {
    auto rule_index = static_cast<uint32_t>(set_.rules_.size());
    current_rule_ = &config;
    uint32_t root = build(config.condition, rule_index);
    set_.rules_.push_back({config.name, config.class_name, config.action, config.enforce,
                           config.deny.status, config.deny.body, root});
    // A rule with no matched leaf has the value it has with every leaf false; when that value is
    // true (only `not`/absent conditions), the rule must be evaluated on every request.
    if (set_.holds_when_nothing_matched(root)) set_.always_rules_.push_back(rule_index);
  }

  void finish() {
    set_.cidr_tree_ = std::make_unique<RuleSet::CidrTree>(blocks_);
    set_.build_name_table();
    for (auto& [method, leaves] : methods_) set_.method_leaves_.emplace_back(method, leaves);
    for (std::size_t id = 0; id < pattern_leaves_.size(); ++id) {
      const std::vector<uint32_t>& leaves = pattern_leaves_[id];
      set_.patterns_.push_back({static_cast<uint32_t>(set_.pattern_leaves_.size()),
                                static_cast<uint32_t>(leaves.size()), pattern_tokens_[id].first,
                                pattern_tokens_[id].second});
      set_.pattern_leaves_.insert(set_.pattern_leaves_.end(), leaves.begin(), leaves.end());
    }
    if (!errors_.empty()) return;
    hs_scratch_t* scratch = nullptr;
    auto compile = [&](const Field& field, HsDatabasePtr& out) {
      if (field.expressions.empty()) return;
      out = compile_field(field);
      if (out && hs_alloc_scratch(out.get(), &scratch) != HS_SUCCESS) {
        report({}, "cannot allocate Hyperscan scratch space");
      }
    };
    compile(user_agent_, set_.user_agent_database_);
    compile(target_, set_.target_database_);
    for (std::size_t i = 0; i < header_fields_.size(); ++i) {
      compile(header_fields_[i], set_.headers_[i].database);
    }
    set_.prototype_scratch_.reset(scratch);
  }

 private:
  // The expressions of one request field, compiled into one database.
  struct Field {
    std::vector<std::string> expressions;
    std::vector<unsigned> flags;
    std::vector<unsigned> ids;  // global pattern ids
    std::map<std::pair<std::string, unsigned>, uint32_t> ids_by_expression;
  };
  struct Source {
    std::string rule;
    std::string text;
    SourceLocation where;
  };

  void report(const SourceLocation& where, std::string message) {
    errors_.push_back({where.file, where.line, where.column, std::move(message)});
  }

  HsDatabasePtr compile_field(const Field& field) {
    std::vector<const char*> expressions;
    for (const std::string& expression : field.expressions) {
      expressions.push_back(expression.c_str());
    }
    hs_database_t* database = nullptr;
    hs_compile_error_t* raw_error = nullptr;
    if (hs_compile_multi(expressions.data(), field.flags.data(), field.ids.data(),
                         static_cast<unsigned>(expressions.size()), HS_MODE_BLOCK, nullptr,
                         &database, &raw_error) == HS_SUCCESS) {
      return HsDatabasePtr(database);
    }
    CompileErrorPtr error(raw_error);
    std::string message = error && error->message ? error->message : "compile failed";
    if (error && error->expression >= 0 &&
        static_cast<std::size_t>(error->expression) < field.ids.size()) {
      const Source& source = sources_[field.ids[error->expression]];
      report(source.where, "rule '" + source.rule + "': pattern '" + source.text +
                               "' cannot be compiled: " + message + hint_for(message));
    } else {
      report({}, "the rule set cannot be compiled: " + message);
    }
    return nullptr;
  }

  uint32_t new_leaf(uint32_t rule_index) {
    auto leaf = static_cast<uint32_t>(set_.leaf_info_.size());
    set_.leaf_info_.push_back(rule_index | (negations_ % 2 == 0 ? RuleSet::kTriggerBit : 0u));
    return leaf;
  }

  uint32_t push_node(RuleSet::Op op, uint32_t first, uint32_t count) {
    set_.nodes_.push_back({op, first, count});
    return static_cast<uint32_t>(set_.nodes_.size() - 1);
  }

  uint32_t leaf_node(uint32_t leaf) { return push_node(RuleSet::Op::kLeaf, leaf, 0); }

  // The index of a header in set_.headers_ and header_fields_.
  std::size_t header_index(const std::string& name) {
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (std::size_t i = 0; i < set_.headers_.size(); ++i) {
      if (set_.headers_[i].name == lower) return i;
    }
    set_.headers_.push_back({lower, nullptr, {}});
    header_fields_.emplace_back();
    return set_.headers_.size() - 1;
  }

  void add_pattern(const PatternConfig& pattern, uint32_t leaf, Field& field) {
    const bool token = pattern.kind == PatternConfig::Kind::kToken;
    // A token: its literal, boundaries checked in on_match (see kContinuesToken).
    std::string regex = token ? escape_literal(pattern.text) : pattern.text;
    uint8_t boundary = 0;
    if (token && !pattern.text.empty()) {
      if (continues_token(pattern.text.front())) boundary |= RuleSet::kBoundaryBefore;
      if (continues_token(pattern.text.back())) boundary |= RuleSet::kBoundaryAfter;
    }
    // A leaf only needs to know that one of its patterns matched, not where or how often; a token
    // needs every occurrence, as the first may fail the boundary test. (Token and regex entries
    // never share an id: their flags differ in HS_FLAG_SINGLEMATCH.)
    unsigned flags = (token ? 0 : HS_FLAG_SINGLEMATCH) | (pattern.case_sensitive ? 0 : HS_FLAG_CASELESS);
    // Checked one by one so that every bad pattern is reported, not only the first.
    bool can_be_empty = false;
    if (std::string message = expression_error(regex, flags, can_be_empty); !message.empty()) {
      report(pattern.where, "rule '" + current_rule_->name + "': regex '" + pattern.text +
                                "' is not supported: " + message + hint_for(message));
      return;
    }
    // A regex that matches the empty string matches every value, including an empty one.
    if (can_be_empty) flags |= HS_FLAG_ALLOWEMPTY;
    auto [it, inserted] = field.ids_by_expression.emplace(
        std::make_pair(regex, flags), static_cast<uint32_t>(pattern_leaves_.size()));
    if (inserted) {
      field.expressions.push_back(regex);
      field.flags.push_back(flags);
      field.ids.push_back(it->second);
      pattern_leaves_.emplace_back();
      pattern_tokens_.push_back({static_cast<uint32_t>(pattern.text.size()), boundary});
      sources_.push_back({current_rule_->name, pattern.text, pattern.where});
    }
    std::vector<uint32_t>& leaves = pattern_leaves_[it->second];
    if (leaves.empty() || leaves.back() != leaf) leaves.push_back(leaf);
  }

  uint32_t build(const Condition& condition, uint32_t rule_index) {
    switch (condition.kind) {
      case ConditionKind::kAll:
      case ConditionKind::kAny:
      case ConditionKind::kNot: {
        std::vector<uint32_t> children;
        if (condition.kind == ConditionKind::kNot) ++negations_;
        for (const Condition& child : condition.children) {
          children.push_back(build(child, rule_index));
        }
        if (condition.kind == ConditionKind::kNot) --negations_;
        auto first = static_cast<uint32_t>(set_.children_.size());
        set_.children_.insert(set_.children_.end(), children.begin(), children.end());
        RuleSet::Op op = condition.kind == ConditionKind::kAll   ? RuleSet::Op::kAll
                         : condition.kind == ConditionKind::kAny ? RuleSet::Op::kAny
                                                                 : RuleSet::Op::kNot;
        return push_node(op, first, static_cast<uint32_t>(children.size()));
      }
      case ConditionKind::kUserAgent:
      case ConditionKind::kPath:
      case ConditionKind::kHeaderMatches: {
        uint32_t leaf = new_leaf(rule_index);
        Field& field = condition.kind == ConditionKind::kUserAgent ? user_agent_
                       : condition.kind == ConditionKind::kPath
                           ? target_
                           : header_fields_[header_index(condition.header)];
        for (const PatternConfig& pattern : condition.patterns) add_pattern(pattern, leaf, field);
        return leaf_node(leaf);
      }
      case ConditionKind::kMethod: {
        uint32_t leaf = new_leaf(rule_index);
        for (const std::string& method : condition.methods) {
          std::vector<uint32_t>& leaves = methods_[method];
          if (leaves.empty() || leaves.back() != leaf) leaves.push_back(leaf);
        }
        return leaf_node(leaf);
      }
      case ConditionKind::kHeaderPresent:
      case ConditionKind::kHeaderAbsent: {
        // An absent test is not(present). The present node reads the header slot's "seen this
        // request" flag; it needs no leaf. Under an even number of `not`s (counting the absent's
        // own) a present header can make the rule true, so the slot lists the rule: the rule is
        // then a candidate whenever the header is present.
        bool absent = condition.kind == ConditionKind::kHeaderAbsent;
        auto slot = static_cast<uint32_t>(header_index(condition.header));
        if ((negations_ + (absent ? 1 : 0)) % 2 == 0) {
          std::vector<uint32_t>& rules = set_.headers_[slot].present_rules;
          if (rules.empty() || rules.back() != rule_index) rules.push_back(rule_index);
        }
        uint32_t present = push_node(RuleSet::Op::kHeader, slot, 0);
        if (!absent) return present;
        auto first = static_cast<uint32_t>(set_.children_.size());
        set_.children_.push_back(present);
        return push_node(RuleSet::Op::kNot, first, 1);
      }
      case ConditionKind::kRemoteAddress: {
        uint32_t leaf = new_leaf(rule_index);
        for (const Cidr& cidr : condition.cidrs) {
          blocks_.push_back(
              {cidr.network.bytes(), cidr.prefix_len_128(), cidr.network.is_v4(), leaf});
        }
        return leaf_node(leaf);
      }
    }
    return leaf_node(new_leaf(rule_index));
  }

  RuleSet& set_;
  std::vector<ConfigError>& errors_;
  const RuleConfig* current_rule_ = nullptr;
  int negations_ = 0;  // `not`s above the node being built
  Field user_agent_;
  Field target_;
  std::vector<Field> header_fields_;                   // parallel to set_.headers_
  std::vector<std::vector<uint32_t>> pattern_leaves_;  // global pattern id -> leaves
  std::vector<std::pair<uint32_t, uint8_t>> pattern_tokens_;  // id -> token length, boundary
  std::vector<Source> sources_;                        // global pattern id -> first source
  std::map<std::string, std::vector<uint32_t>> methods_;
  std::vector<RuleSet::CidrTree::Block> blocks_;
};

RuleSet::RuleSet() = default;
RuleSet::~RuleSet() = default;

CompileResult RuleSet::compile(const Config& config) {
  CompileResult result;
  std::shared_ptr<RuleSet> rule_set(new RuleSet());
  rule_set->generation_ = next_generation.fetch_add(1);
  RuleSetBuilder builder(*rule_set, result.errors);
  for (const RuleConfig& rule : config.rules) builder.add_rule(rule);
  builder.finish();
  if (result.errors.empty()) result.rule_set = std::move(rule_set);
  return result;
}

bool RuleSet::holds_when_nothing_matched(uint32_t index) const {
  const Node& node = nodes_[index];
  switch (node.op) {
    case Op::kLeaf:
    case Op::kHeader:
      return false;
    case Op::kAll:
      for (uint32_t i = 0; i < node.count; ++i) {
        if (!holds_when_nothing_matched(children_[node.first + i])) return false;
      }
      return true;
    case Op::kAny:
      for (uint32_t i = 0; i < node.count; ++i) {
        if (holds_when_nothing_matched(children_[node.first + i])) return true;
      }
      return false;
    case Op::kNot:
      return !holds_when_nothing_matched(children_[node.first]);
  }
  return false;
}

bool RuleSet::holds(uint32_t index, const MatchScratch& scratch) const {
  const Node& node = nodes_[index];
  switch (node.op) {
    case Op::kLeaf:
      return scratch.leaf_epoch_[node.first] == scratch.epoch_;
    case Op::kHeader:
      return scratch.header_epoch_[node.first] == scratch.epoch_;
    case Op::kAll:
      for (uint32_t i = 0; i < node.count; ++i) {
        if (!holds(children_[node.first + i], scratch)) return false;
      }
      return true;
    case Op::kAny:
      for (uint32_t i = 0; i < node.count; ++i) {
        if (holds(children_[node.first + i], scratch)) return true;
      }
      return false;
    case Op::kNot:
      return !holds(children_[node.first], scratch);
  }
  return false;
}

void RuleSet::prepare(MatchScratch& scratch) const {
  if (scratch.generation_ == generation_) return;
  scratch.hs_scratch_.reset();
  if (prototype_scratch_) {
    hs_scratch_t* clone = nullptr;
    if (hs_clone_scratch(prototype_scratch_.get(), &clone) != HS_SUCCESS) throw std::bad_alloc();
    scratch.hs_scratch_.reset(clone);
  }
  scratch.header_epoch_.assign(slot_names_.size(), 0);
  scratch.leaf_epoch_.assign(leaf_info_.size(), 0);
  scratch.rule_epoch_.assign(rules_.size(), 0);
  scratch.candidates_.clear();
  scratch.candidates_.reserve(64);
  scratch.epoch_ = 0;
  scratch.generation_ = generation_;
}

namespace {
struct ScanContext {
  const RuleSet* self;
  MatchScratch* scratch;
  std::string_view value;
};
}  // namespace

int RuleSet::on_match(unsigned int id, unsigned long long /*from*/, unsigned long long to,
                      unsigned int /*flags*/, void* context) {
  auto* scan = static_cast<ScanContext*>(context);
  const RuleSet& self = *scan->self;
  const Pattern& pattern = self.patterns_[id];
  if (pattern.boundary) {
    // A token occurrence ends at `to` and starts token_length bytes before it.
    const std::string_view value = scan->value;
    if ((pattern.boundary & kBoundaryBefore) && to > pattern.token_length &&
        continues_token(value[to - pattern.token_length - 1])) {
      return 0;
    }
    if ((pattern.boundary & kBoundaryAfter) && to < value.size() && continues_token(value[to])) {
      return 0;
    }
  }
  for (uint32_t i = 0; i < pattern.leaf_count; ++i) {
    self.mark_leaf(self.pattern_leaves_[pattern.first_leaf + i], *scan->scratch);
  }
  return 0;
}

inline void RuleSet::add_candidate(uint32_t rule, MatchScratch& scratch) const {
  if (scratch.rule_epoch_[rule] != scratch.epoch_) {
    scratch.rule_epoch_[rule] = scratch.epoch_;
    scratch.candidates_.push_back(rule);
  }
}

void RuleSet::mark_leaf(uint32_t leaf, MatchScratch& scratch) const {
  uint32_t epoch = scratch.epoch_;
  if (scratch.leaf_epoch_[leaf] == epoch) return;
  scratch.leaf_epoch_[leaf] = epoch;
  // A leaf under an odd number of `not`s can only make its rule false; the rule is a candidate
  // only through its positive leaves (or by being in always_rules_).
  uint32_t info = leaf_info_[leaf];
  if (info & kTriggerBit) add_candidate(info & ~kTriggerBit, scratch);
}

void RuleSet::scan(const hs_database* database, std::string_view value,
                   MatchScratch& scratch) const {
  ScanContext context{this, &scratch, value};
  // Hyperscan wants a non-null pointer even for an empty value.
  const char* data = value.empty() ? "" : value.data();
  hs_scan(database, data, static_cast<unsigned>(value.size()), 0, scratch.hs_scratch_.get(),
          &RuleSet::on_match, &context);
}

// Length, first and last byte of a name, each byte | 0x20: equal for names that iequals() calls
// equal (it folds letters only; | 0x20 may fold more, which find_slot's iequals sorts out).
inline uint32_t RuleSet::name_key(std::string_view name) {
  if (name.empty()) return 0;
  auto first = static_cast<unsigned char>(name.front()) | 0x20u;
  auto last = static_cast<unsigned char>(name.back()) | 0x20u;
  return static_cast<uint32_t>(name.size()) << 16 | first << 8 | last;
}

void RuleSet::build_name_table() {
  slot_names_.clear();
  for (const HeaderSlot& slot : headers_) slot_names_.push_back(slot.name);
  user_agent_slot_ = static_cast<uint32_t>(
      std::find(slot_names_.begin(), slot_names_.end(), "user-agent") - slot_names_.begin());
  if (user_agent_slot_ == slot_names_.size()) slot_names_.push_back("user-agent");
  std::size_t size = 16;
  while (size < 4 * slot_names_.size()) size *= 2;
  name_table_.assign(size, NameEntry{});
  name_lengths_ = 0;
  for (const std::string& name : slot_names_) name_lengths_ |= uint64_t{1} << std::min<std::size_t>(name.size(), 63);
  name_shift_ = 32 - static_cast<uint32_t>(std::countr_zero(size));
  for (std::size_t slot = 0; slot < slot_names_.size(); ++slot) {
    uint32_t key = name_key(slot_names_[slot]);
    uint32_t i = (key * 0x9e3779b1u) >> name_shift_;
    while (name_table_[i].slot != kNoSlot) i = (i + 1) & (size - 1);
    name_table_[i] = {key, static_cast<uint32_t>(slot)};
  }
}

inline uint32_t RuleSet::find_slot(std::string_view name) const {
  const uint32_t key = name_key(name);
  const auto mask = static_cast<uint32_t>(name_table_.size() - 1);
  for (uint32_t i = (key * 0x9e3779b1u) >> name_shift_;; i = (i + 1) & mask) {
    const NameEntry& entry = name_table_[i];
    if (entry.slot == kNoSlot) return kNoSlot;
    if (entry.key == key && iequals(name, slot_names_[entry.slot])) return entry.slot;
  }
}

void RuleSet::mark_leaves(const RequestView& request, MatchScratch& scratch) const {
  prepare(scratch);
  if (++scratch.epoch_ == 0) {
    // After 2^32 requests the epochs wrap: forget all marks once.
    std::fill(scratch.leaf_epoch_.begin(), scratch.leaf_epoch_.end(), 0);
    std::fill(scratch.rule_epoch_.begin(), scratch.rule_epoch_.end(), 0);
    std::fill(scratch.header_epoch_.begin(), scratch.header_epoch_.end(), 0);
    scratch.epoch_ = 1;
  }
  const uint32_t epoch = scratch.epoch_;
  scratch.candidates_.clear();
  // One pass over the request's fields. Only the first field of each name counts, as
  // RequestView::header() sees it; the slot's epoch is also what {present}/{absent} nodes read.
  std::string_view user_agent;  // an absent User-Agent is scanned as "", so '^$' finds it
  const auto header_slots = static_cast<uint32_t>(headers_.size());
  std::size_t unseen = slot_names_.size();
  for (const HeaderField& field : request.headers) {
    // Most request fields have a name length no rule uses: one bit test, no hashing.
    if (!((name_lengths_ >> std::min<std::size_t>(field.name.size(), 63)) & 1)) continue;
    const uint32_t slot = find_slot(field.name);
    if (slot == kNoSlot || scratch.header_epoch_[slot] == epoch) continue;
    scratch.header_epoch_[slot] = epoch;
    if (slot == user_agent_slot_) user_agent = field.value;
    const bool last = --unseen == 0;  // every slot seen: the rest of the fields cannot matter
    if (slot < header_slots) {
      const HeaderSlot& header = headers_[slot];
      for (uint32_t rule : header.present_rules) add_candidate(rule, scratch);
      if (header.database) scan(header.database.get(), field.value, scratch);
    }
    if (last) break;
  }
  if (user_agent_database_) scan(user_agent_database_.get(), user_agent, scratch);
  if (target_database_) scan(target_database_.get(), request.target, scratch);
  if (!method_leaves_.empty()) {
    auto it = std::lower_bound(
        method_leaves_.begin(), method_leaves_.end(), request.method,
        [](const auto& entry, std::string_view method) { return entry.first < method; });
    if (it != method_leaves_.end() && it->first == request.method) {
      for (uint32_t leaf : it->second) mark_leaf(leaf, scratch);
    }
  }
  cidr_tree_->lookup(request.client_ip, [&](uint32_t leaf) { mark_leaf(leaf, scratch); });
}

template <typename Visit>
void RuleSet::for_each_candidate(MatchScratch& scratch, Visit&& visit) const {
  std::vector<uint32_t>& candidates = scratch.candidates_;
  // Hyperscan reports in text order; rule order decides.
  std::sort(candidates.begin(), candidates.end());
  std::size_t i = 0;
  std::size_t j = 0;
  while (i < candidates.size() || j < always_rules_.size()) {
    uint32_t rule;
    if (j >= always_rules_.size() || (i < candidates.size() && candidates[i] < always_rules_[j])) {
      rule = candidates[i++];
    } else {
      rule = always_rules_[j++];
      if (i < candidates.size() && candidates[i] == rule) ++i;
    }
    if (!holds(rules_[rule].root, scratch)) continue;
    if (!visit(rule)) return;
  }
}

RuleMatch RuleSet::rule(uint32_t index) const {
  const Rule& rule = rules_[index];
  return {index,         rule.name,        rule.class_name, rule.action,
          rule.enforced, rule.deny_status, rule.deny_body};
}

Decision RuleSet::evaluate(const RequestView& request, MatchScratch& scratch) const {
  mark_leaves(request, scratch);
  uint32_t winner = Decision::kNoRule;
  uint32_t first_shadow = Decision::kNoRule;
  for_each_candidate(scratch, [&](uint32_t rule) {
    if (rules_[rule].enforced) {
      winner = rule;
      return false;
    }
    if (first_shadow == Decision::kNoRule) first_shadow = rule;
    return true;
  });
  Decision decision;
  if (winner == Decision::kNoRule) {
    winner = first_shadow;
    first_shadow = Decision::kNoRule;
  }
  if (winner == Decision::kNoRule) return decision;
  const Rule& rule = rules_[winner];
  decision.rule_index = winner;
  decision.rule_name = rule.name;
  decision.class_name = rule.class_name;
  decision.action = rule.action;
  decision.enforced = rule.enforced;
  decision.deny_status = rule.deny_status;
  decision.deny_body = rule.deny_body;
  decision.shadow_rule_index = first_shadow;
  return decision;
}

std::vector<RuleMatch> RuleSet::explain(const RequestView& request, MatchScratch& scratch) const {
  mark_leaves(request, scratch);
  std::vector<RuleMatch> matches;
  for_each_candidate(scratch, [&](uint32_t rule) {
    matches.push_back(this->rule(rule));
    return true;
  });
  return matches;
}

std::vector<RuleMatch> RuleSet::explain(const RequestView& request) const {
  MatchScratch scratch;
  return explain(request, scratch);
}

}  // namespace crawlgate
