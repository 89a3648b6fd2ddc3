// The behavioural model: gradient-boosted trees loaded from a crawlgate-model JSON file
// (docs/model.md, "Model file format"), flattened into arrays for inference.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "crawlgate/classifier/features.h"

namespace crawlgate {

class Model {
 public:
  static constexpr std::size_t kMaxTrees = 512;
  static constexpr std::size_t kMaxNodesPerTree = 256;

  enum class Link : uint8_t { logistic, identity };

  // `path_or_json_text`: JSON text when its first non-blank character is '{', else a file path.
  // Returns the model or an error message naming the JSON path ("$.trees[3].nodes[2].left: ...").
  static std::variant<std::shared_ptr<const Model>, std::string> load(
      const std::string& path_or_json_text);
  static std::variant<std::shared_ptr<const Model>, std::string> parse(std::string_view json_text);
  static std::variant<std::shared_ptr<const Model>, std::string> load_file(const std::string& path);

  // link(base_score + sum of the leaves reached), in [0, 1] for the logistic link.
  double score(const FeatureVector& x) const { return apply_link(raw_score(x)); }
  double raw_score(const FeatureVector& x) const;
  double apply_link(double raw) const;

  // Why a score is what it is: each feature's share of raw_score (Saabas' path attribution).
  // Along each tree's path, a split's feature is credited with the change of the expected leaf
  // value from the node to the child taken, children weighted equally (the file has no node
  // counts). Exact: raw_score(x) == base_score() + expected_sum() + the sum of the shares.
  using Contributions = std::array<double, FeatureVector::kSize>;
  Contributions contributions(const FeatureVector& x) const;
  double expected_sum() const { return expected_sum_; }
  // The `n` features that pushed the score up most, "name+1.23,name+0.45" (raw-score units).
  std::string top_features(const FeatureVector& x, std::size_t n = 3) const;

  std::size_t tree_count() const { return roots_.size(); }
  std::size_t node_count() const { return nodes_.size(); }
  Link link() const { return link_; }
  double base_score() const { return base_score_; }
  const std::vector<std::string>& feature_names() const { return feature_names_; }
  const std::string& created() const { return created_; }
  // "thresholds_hint": name -> value (optional; empty when absent).
  const std::map<std::string, double>& thresholds_hint() const { return thresholds_hint_; }

  // A flattened node (16 bytes). Each tree is laid out breadth-first with a split's children
  // adjacent: the right child is always left + 1, so a step is `i = left + (x > value)`.
  struct Node {
    double value;     // threshold for a split, leaf value for a leaf
    int32_t feature;  // FeatureVector index, or -1 for a leaf
    uint32_t left;    // absolute index into nodes_ of the left child
  };
  const std::vector<Node>& nodes() const { return nodes_; }

 private:
  Model() = default;

  void compute_expectations();

  std::vector<Node> nodes_;
  // Per node: its expected leaf value (children weighted equally) minus its parent's; 0 at roots.
  std::vector<double> step_gain_;
  double expected_sum_ = 0;  // the sum of every root's expected value
  std::vector<uint32_t> roots_;
  double base_score_ = 0;
  Link link_ = Link::logistic;
  std::vector<std::string> feature_names_;
  std::string created_;
  std::map<std::string, double> thresholds_hint_;

  friend class ModelParser;
};

}  // namespace crawlgate
