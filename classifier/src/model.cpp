// Model loading (complete validation, errors named by JSON path) and flattened tree inference.
#include "crawlgate/classifier/model.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_set>

namespace crawlgate {

using json = nlohmann::json;

namespace {

struct Invalid {
  std::string message;
};

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Invalid{path + ": " + what};
}

const char* type_name(const json& j) { return j.type_name(); }

const json& member(const json& obj, const std::string& path, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end()) fail(path, std::string("missing required member \"") + key + "\"");
  return *it;
}

std::string child(const std::string& path, const char* key) { return path + "." + key; }
std::string child(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

double finite_number(const json& j, const std::string& path) {
  if (!j.is_number()) fail(path, std::string("must be a number, not ") + type_name(j));
  const double v = j.get<double>();
  if (!std::isfinite(v)) fail(path, "must be a finite number");
  return v;
}

int64_t integer(const json& j, const std::string& path) {
  if (!j.is_number_integer()) fail(path, std::string("must be an integer, not ") + type_name(j));
  if (j.is_number_unsigned()) {
    const uint64_t u = j.get<uint64_t>();
    return u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(u);
  }
  return j.get<int64_t>();
}

const std::string& string_value(const json& j, const std::string& path) {
  if (!j.is_string()) fail(path, std::string("must be a string, not ") + type_name(j));
  return j.get_ref<const std::string&>();
}

struct RawNode {
  bool leaf = false;
  double value = 0;  // leaf value or threshold
  int feature = -1;  // model-local feature index
  uint32_t left = 0, right = 0;
};

}  // namespace

class ModelParser {
 public:
  static std::shared_ptr<const Model> build(const json& root) {
    if (!root.is_object()) fail("$", std::string("must be an object, not ") + type_name(root));
    auto model = std::shared_ptr<Model>(new Model());

    const std::string& format = string_value(member(root, "$", "format"), "$.format");
    if (format != "crawlgate-model") {
      fail("$.format", "must be \"crawlgate-model\", not \"" + format + "\"");
    }
    const int64_t version = integer(member(root, "$", "version"), "$.version");
    if (version != 1) fail("$.version", "unsupported version " + std::to_string(version) + " (this build reads version 1)");
    const std::string& kind = string_value(member(root, "$", "kind"), "$.kind");
    if (kind != "trees") fail("$.kind", "unsupported kind \"" + kind + "\" (supported: \"trees\")");

    if (const auto it = root.find("created"); it != root.end()) {
      model->created_ = string_value(*it, "$.created");
    }
    if (const auto it = root.find("transform"); it != root.end()) {
      if (!it->is_object()) fail("$.transform", std::string("must be an object, not ") + type_name(*it));
      const std::string& t = string_value(member(*it, "$.transform", "kind"), "$.transform.kind");
      if (t != "none") {
        fail("$.transform.kind", "unsupported transform \"" + t + "\" (supported: \"none\")");
      }
    }

    // Features: model-local index -> FeatureVector index.
    const json& features = member(root, "$", "features");
    if (!features.is_array()) fail("$.features", std::string("must be an array, not ") + type_name(features));
    if (features.empty()) fail("$.features", "must name at least one feature");
    std::vector<int> map;
    std::unordered_set<std::string> seen;
    for (std::size_t i = 0; i < features.size(); ++i) {
      const std::string path = child("$.features", i);
      const std::string& name = string_value(features[i], path);
      const auto index = FeatureVector::index_of(name);
      if (!index) fail(path, "unknown feature \"" + name + "\" (this build does not compute it)");
      if (!seen.insert(name).second) fail(path, "duplicate feature \"" + name + "\"");
      map.push_back(static_cast<int>(*index));
      model->feature_names_.push_back(name);
    }

    model->base_score_ = finite_number(member(root, "$", "base_score"), "$.base_score");
    const std::string& link = string_value(member(root, "$", "link"), "$.link");
    if (link == "logistic") {
      model->link_ = Model::Link::logistic;
    } else if (link == "identity") {
      model->link_ = Model::Link::identity;
    } else {
      fail("$.link", "unsupported link \"" + link + "\" (supported: \"logistic\", \"identity\")");
    }

    if (const auto it = root.find("thresholds_hint"); it != root.end()) {
      if (!it->is_object()) fail("$.thresholds_hint", std::string("must be an object, not ") + type_name(*it));
      for (const auto& [key, value] : it->items()) {
        model->thresholds_hint_[key] = finite_number(value, "$.thresholds_hint." + key);
      }
    }

    const json& trees = member(root, "$", "trees");
    if (!trees.is_array()) fail("$.trees", std::string("must be an array, not ") + type_name(trees));
    if (trees.empty()) fail("$.trees", "must hold at least one tree");
    if (trees.size() > Model::kMaxTrees) {
      fail("$.trees", "too many trees: " + std::to_string(trees.size()) + " (at most " +
                          std::to_string(Model::kMaxTrees) + ")");
    }
    for (std::size_t t = 0; t < trees.size(); ++t) {
      add_tree(*model, trees[t], child("$.trees", t), map);
    }
    model->compute_expectations();
    return model;
  }

 private:
  static void add_tree(Model& model, const json& tree, const std::string& tpath,
                       const std::vector<int>& map) {
    if (!tree.is_object()) fail(tpath, std::string("must be an object, not ") + type_name(tree));
    const std::string npath = child(tpath, "nodes");
    const json& nodes = member(tree, tpath, "nodes");
    if (!nodes.is_array()) fail(npath, std::string("must be an array, not ") + type_name(nodes));
    if (nodes.empty()) fail(npath, "must hold at least one node");
    if (nodes.size() > Model::kMaxNodesPerTree) {
      fail(npath, "too many nodes: " + std::to_string(nodes.size()) + " (at most " +
                      std::to_string(Model::kMaxNodesPerTree) + ")");
    }
    const std::size_t n = nodes.size();
    std::vector<RawNode> raw(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::string path = child(npath, i);
      const json& node = nodes[i];
      if (!node.is_object()) fail(path, std::string("must be an object, not ") + type_name(node));
      RawNode& r = raw[i];
      if (const auto leaf = node.find("leaf"); leaf != node.end()) {
        for (const char* key : {"feature", "threshold", "left", "right"}) {
          if (node.contains(key)) fail(path, std::string("a leaf must not have \"") + key + "\"");
        }
        r.leaf = true;
        r.value = finite_number(*leaf, child(path, "leaf"));
        continue;
      }
      const int64_t f = integer(member(node, path, "feature"), child(path, "feature"));
      if (f < 0 || static_cast<std::size_t>(f) >= map.size()) {
        fail(child(path, "feature"), "feature index " + std::to_string(f) + " out of range (" +
                                         std::to_string(map.size()) + " features)");
      }
      r.feature = static_cast<int>(f);
      r.value = finite_number(member(node, path, "threshold"), child(path, "threshold"));
      for (const char* side : {"left", "right"}) {
        const std::string spath = child(path, side);
        const int64_t c = integer(member(node, path, side), spath);
        if (c < 0 || static_cast<std::size_t>(c) >= n) {
          fail(spath, "node index " + std::to_string(c) + " out of range (tree has " +
                          std::to_string(n) + " nodes)");
        }
        (side[0] == 'l' ? r.left : r.right) = static_cast<uint32_t>(c);
      }
    }

    // Every node reached exactly once from the root (a tree: no cycle, no shared node, nothing
    // unreachable). Iterative walk; `parent_side` names the edge for error messages.
    std::vector<uint8_t> state(n, 0);  // 0 unseen, 1 on the current path, 2 done
    struct Frame {
      uint32_t node;
      uint8_t next;  // 0: visit left, 1: visit right, 2: done
    };
    std::vector<Frame> stack{{0, 0}};
    state[0] = 1;
    while (!stack.empty()) {
      Frame& f = stack.back();
      const RawNode& r = raw[f.node];
      if (r.leaf || f.next == 2) {
        state[f.node] = 2;
        stack.pop_back();
        continue;
      }
      const bool left = f.next == 0;
      const uint32_t c = left ? r.left : r.right;
      ++f.next;
      const std::string epath = child(child(npath, f.node), left ? "left" : "right");
      if (state[c] == 1) fail(epath, "cycle: node " + std::to_string(c) + " is its own ancestor");
      if (state[c] == 2) {
        fail(epath, "node " + std::to_string(c) + " is reached twice (nodes must form a tree)");
      }
      state[c] = 1;
      stack.push_back({c, 0});
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (state[i] == 0) fail(child(npath, i), "node is unreachable from the root (node 0)");
    }

    // Breadth-first layout with each split's children adjacent.
    const uint32_t base = static_cast<uint32_t>(model.nodes_.size());
    model.roots_.push_back(base);
    std::vector<uint32_t> order{0};
    model.nodes_.push_back({});
    for (std::size_t k = 0; k < order.size(); ++k) {
      const RawNode& r = raw[order[k]];
      Model::Node& out = model.nodes_[base + k];
      out.value = r.value;
      if (r.leaf) {
        out.feature = -1;
        out.left = 0;
        continue;
      }
      out.feature = map[r.feature];
      out.left = static_cast<uint32_t>(model.nodes_.size());
      order.push_back(r.left);
      order.push_back(r.right);
      model.nodes_.push_back({});
      model.nodes_.push_back({});
    }
  }
};

namespace {
// One step down; NaN compares false, so missing values go left.
inline const Model::Node* step(const Model::Node* nodes, const Model::Node* n, const double* x) {
  return nodes + n->left + (x[n->feature] > n->value);
}

// Walks every tree to its leaf, four side by side: each walk is a chain of dependent loads, so
// interleaving them lets the CPU overlap their latencies. `on_step(from, to)` sees every step;
// `on_leaf(leaf)` sees each tree's leaf in tree order (raw_score's summation order).
template <typename OnStep, typename OnLeaf>
inline void walk_trees(const Model::Node* nodes, const std::vector<uint32_t>& roots,
                       const double* x, OnStep&& on_step, OnLeaf&& on_leaf) {
  auto advance = [&](const Model::Node*& n) {
    const Model::Node* next = step(nodes, n, x);
    on_step(n, next);
    n = next;
  };
  const std::size_t count = roots.size();
  std::size_t t = 0;
  for (; t + 4 <= count; t += 4) {
    const Model::Node* a = nodes + roots[t];
    const Model::Node* b = nodes + roots[t + 1];
    const Model::Node* c = nodes + roots[t + 2];
    const Model::Node* d = nodes + roots[t + 3];
    while ((a->feature & b->feature & c->feature & d->feature) >= 0) {  // any split left
      if (a->feature >= 0) advance(a);
      if (b->feature >= 0) advance(b);
      if (c->feature >= 0) advance(c);
      if (d->feature >= 0) advance(d);
    }
    // Leaves stay leaves, so each tree's leaf is final once its walk stops.
    on_leaf(a);
    on_leaf(b);
    on_leaf(c);
    on_leaf(d);
  }
  for (; t < count; ++t) {
    const Model::Node* n = nodes + roots[t];
    while (n->feature >= 0) advance(n);
    on_leaf(n);
  }
}
}  // namespace

double Model::raw_score(const FeatureVector& x) const {
  double sum = base_score_;
  walk_trees(
      nodes_.data(), roots_, x.values.data(), [](const Node*, const Node*) {},
      [&sum](const Node* leaf) { sum += leaf->value; });
  return sum;
}

void Model::compute_expectations() {
  // Children come after their parent in nodes_ (breadth-first per tree), so one backward pass
  // sees both children of a split before the split.
  std::vector<double> expected(nodes_.size(), 0.0);
  for (std::size_t i = nodes_.size(); i-- > 0;) {
    const Node& n = nodes_[i];
    expected[i] = n.feature < 0 ? n.value : (expected[n.left] + expected[n.left + 1]) / 2;
  }
  // What stepping into a node adds: one load per step when attributing.
  step_gain_.assign(nodes_.size(), 0.0);
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    if (n.feature < 0) continue;
    step_gain_[n.left] = expected[n.left] - expected[i];
    step_gain_[n.left + 1] = expected[n.left + 1] - expected[i];
  }
  expected_sum_ = 0;
  for (uint32_t root : roots_) expected_sum_ += expected[root];
}

Model::Contributions Model::contributions(const FeatureVector& x) const {
  Contributions out{};
  const Node* nodes = nodes_.data();
  const double* gain = step_gain_.data();
  walk_trees(
      nodes, roots_, x.values.data(),
      [&](const Node* from, const Node* to) {
        out[static_cast<std::size_t>(from->feature)] += gain[to - nodes];
      },
      [](const Node*) {});
  return out;
}

std::string Model::top_features(const FeatureVector& x, std::size_t n) const {
  Contributions shares = contributions(x);
  std::array<std::size_t, FeatureVector::kSize> order;
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  n = std::min(n, order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n), order.end(),
                    [&](std::size_t a, std::size_t b) { return shares[a] > shares[b]; });
  std::string text;
  text.reserve(96);
  for (std::size_t k = 0; k < n; ++k) {
    double share = shares[order[k]];
    if (share <= 0) break;
    if (!text.empty()) text.push_back(',');
    text.append(FeatureVector::names()[order[k]]).push_back('+');
    char number[32];
    auto result = std::to_chars(number, number + sizeof number, share, std::chars_format::fixed, 2);
    text.append(number, result.ptr);
  }
  return text;
}

double Model::apply_link(double raw) const {
  return link_ == Link::logistic ? 1.0 / (1.0 + std::exp(-raw)) : raw;
}

std::variant<std::shared_ptr<const Model>, std::string> Model::parse(std::string_view text) {
  json root;
  try {
    root = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    return std::string("invalid JSON: ") + e.what();
  }
  try {
    return ModelParser::build(root);
  } catch (const Invalid& e) {
    return e.message;
  } catch (const json::exception& e) {
    return std::string("invalid model: ") + e.what();
  }
}

std::variant<std::shared_ptr<const Model>, std::string> Model::load_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "cannot open model file '" + path + "': " + std::strerror(errno);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return "cannot read model file '" + path + "'";
  auto result = parse(buffer.str());
  if (auto* error = std::get_if<std::string>(&result)) *error = path + ": " + *error;
  return result;
}

std::variant<std::shared_ptr<const Model>, std::string> Model::load(
    const std::string& path_or_json_text) {
  const std::size_t first = path_or_json_text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && path_or_json_text[first] == '{') {
    return parse(path_or_json_text);
  }
  return load_file(path_or_json_text);
}

}  // namespace crawlgate
