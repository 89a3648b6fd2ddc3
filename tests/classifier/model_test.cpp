#include "crawlgate/classifier/model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>
#include <nlohmann/json.hpp>
#include <string>

namespace crawlgate {
namespace {

using json = nlohmann::json;

// Two trees over three features; the model's feature 0 is rate_60s, 1 asset_share,
// 2 deep_url_share (model-local indices differ from FeatureVector indices on purpose).
json valid_model() {
  return json::parse(R"({
    "format": "crawlgate-model",
    "version": 1,
    "created": "2026-11-23",
    "features": ["rate_60s", "asset_share", "deep_url_share"],
    "transform": {"kind": "none"},
    "kind": "trees",
    "base_score": -1.25,
    "trees": [
      {"nodes": [
        {"feature": 1, "threshold": 0.1, "left": 1, "right": 2},
        {"feature": 0, "threshold": 0.5, "left": 3, "right": 4},
        {"leaf": -0.75},
        {"leaf": 0.25},
        {"leaf": 1.5}
      ]},
      {"nodes": [
        {"feature": 2, "threshold": 0.3, "left": 2, "right": 1},
        {"leaf": 0.8},
        {"leaf": -0.1}
      ]}
    ],
    "link": "logistic",
    "teacher": {"kind": "HistGradientBoostingClassifier", "auc": 0.999},
    "student": {"auc": 0.998, "agreement": 0.995},
    "thresholds_hint": {"fpr_0.001": 0.93}
  })");
}

std::shared_ptr<const Model> must_load(const json& j) {
  auto result = Model::load(j.dump());
  if (auto* error = std::get_if<std::string>(&result)) {
    ADD_FAILURE() << *error;
    return nullptr;
  }
  return std::get<std::shared_ptr<const Model>>(result);
}

std::string error_text(const std::string& text) {
  auto result = Model::load(text);
  if (std::holds_alternative<std::string>(result)) return std::get<std::string>(result);
  ADD_FAILURE() << "loaded, but an error was expected: " << text.substr(0, 200);
  return {};
}
std::string error_of(const json& j) { return error_text(j.dump()); }

FeatureVector vec(double rate60, double asset, double deep) {
  FeatureVector v;
  v[Feature::rate_60s] = rate60;
  v[Feature::asset_share] = asset;
  v[Feature::deep_url_share] = deep;
  return v;
}

double logistic(double x) { return 1.0 / (1.0 + std::exp(-x)); }

TEST(ModelTest, ScoresExactlyAsAHandComputation) {
  const auto model = must_load(valid_model());
  ASSERT_TRUE(model);
  EXPECT_EQ(model->tree_count(), 2u);
  EXPECT_EQ(model->node_count(), 8u);
  EXPECT_EQ(model->created(), "2026-11-23");
  EXPECT_EQ(model->thresholds_hint().at("fpr_0.001"), 0.93);

  // asset 0.05 <= 0.1 -> node 1; rate 0.7 > 0.5 -> leaf 1.5. deep 0.2 <= 0.3 -> node 2: -0.1.
  EXPECT_DOUBLE_EQ(model->raw_score(vec(0.7, 0.05, 0.2)), -1.25 + 1.5 - 0.1);
  EXPECT_DOUBLE_EQ(model->score(vec(0.7, 0.05, 0.2)), logistic(-1.25 + 1.5 - 0.1));
  // Boundaries go left (<=).
  EXPECT_DOUBLE_EQ(model->raw_score(vec(0.5, 0.1, 0.3)), -1.25 + 0.25 - 0.1);
  // asset 0.9 -> -0.75; deep 0.9 -> 0.8.
  EXPECT_DOUBLE_EQ(model->raw_score(vec(0, 0.9, 0.9)), -1.25 - 0.75 + 0.8);
  // Missing (NaN) goes left.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_DOUBLE_EQ(model->raw_score(vec(nan, nan, nan)), -1.25 + 0.25 - 0.1);

  json identity = valid_model();
  identity["link"] = "identity";
  EXPECT_DOUBLE_EQ(must_load(identity)->score(vec(0, 0.9, 0.9)), -1.25 - 0.75 + 0.8);
}

TEST(ModelTest, LoadsFromAFile) {
  const std::string path = ::testing::TempDir() + "/crawlgate_model_test.json";
  {
    std::ofstream out(path);
    out << valid_model().dump(2);
  }
  auto result = Model::load(path);
  ASSERT_TRUE(std::holds_alternative<std::shared_ptr<const Model>>(result))
      << std::get<std::string>(result);
  std::remove(path.c_str());
  const std::string missing = error_text("/nonexistent/model.json");
  EXPECT_NE(missing.find("cannot open model file '/nonexistent/model.json'"), std::string::npos)
      << missing;
}

TEST(ModelTest, BadJson) {
  const std::string e = error_text("{\"format\": \"crawlgate-model\", ");
  EXPECT_NE(e.find("invalid JSON"), std::string::npos) << e;
}

TEST(ModelTest, UnknownFeature) {
  json j = valid_model();
  j["features"][1] = "mouse_movements";
  const std::string e = error_of(j);
  EXPECT_NE(e.find("$.features[1]: unknown feature \"mouse_movements\""), std::string::npos) << e;
}

TEST(ModelTest, DuplicateFeature) {
  json j = valid_model();
  j["features"][2] = "rate_60s";
  EXPECT_NE(error_of(j).find("$.features[2]: duplicate feature"), std::string::npos);
}

TEST(ModelTest, FeatureIndexOutOfRange) {
  json j = valid_model();
  j["trees"][1]["nodes"][0]["feature"] = 3;
  const std::string e = error_of(j);
  EXPECT_NE(e.find("$.trees[1].nodes[0].feature: feature index 3 out of range (3 features)"),
            std::string::npos)
      << e;
}

TEST(ModelTest, ChildIndexOutOfRange) {
  json j = valid_model();
  j["trees"][0]["nodes"][1]["right"] = 5;
  const std::string e = error_of(j);
  EXPECT_NE(e.find("$.trees[0].nodes[1].right: node index 5 out of range (tree has 5 nodes)"),
            std::string::npos)
      << e;
  j["trees"][0]["nodes"][1]["right"] = -1;
  EXPECT_NE(error_of(j).find("$.trees[0].nodes[1].right: node index -1 out of range"),
            std::string::npos);
}

TEST(ModelTest, Cycle) {
  json j = valid_model();
  j["trees"][0]["nodes"][1]["left"] = 0;
  const std::string e = error_of(j);
  EXPECT_NE(e.find("$.trees[0].nodes[1].left: cycle: node 0 is its own ancestor"),
            std::string::npos)
      << e;
  j = valid_model();
  j["trees"][0]["nodes"][1]["right"] = 2;  // shared with the root's right; node 4 unreachable
  EXPECT_NE(error_of(j).find("is reached twice"), std::string::npos);
  j = valid_model();
  j["trees"][0]["nodes"][0]["right"] = 0;  // self-loop
  EXPECT_NE(error_of(j).find("$.trees[0].nodes[0].right: cycle"), std::string::npos);
}

TEST(ModelTest, UnreachableNode) {
  json j = valid_model();
  j["trees"][1]["nodes"].push_back({{"leaf", 1.0}});
  EXPECT_NE(error_of(j).find("$.trees[1].nodes[3]: node is unreachable"), std::string::npos);
}

TEST(ModelTest, NonFiniteAndNonNumbers) {
  json j = valid_model();
  j["trees"][0]["nodes"][2]["leaf"] = "NaN";
  EXPECT_NE(error_of(j).find("$.trees[0].nodes[2].leaf: must be a number, not string"),
            std::string::npos);
  j = valid_model();
  j["trees"][0]["nodes"][0]["threshold"] = nullptr;  // what json.dumps(float('nan')) becomes in some writers
  EXPECT_NE(error_of(j).find("$.trees[0].nodes[0].threshold: must be a number, not null"),
            std::string::npos);
  // Python's json.dumps writes NaN / Infinity literals, which are not JSON.
  std::string text = valid_model().dump();
  text.replace(text.find("-1.25"), 5, "NaN");
  EXPECT_NE(error_text(text).find("invalid JSON"), std::string::npos);
  text = valid_model().dump();
  text.replace(text.find("-1.25"), 5, "1e999");
  EXPECT_NE(error_text(text).find("invalid JSON"), std::string::npos);
  j = valid_model();
  j["base_score"] = "x";
  EXPECT_NE(error_of(j).find("$.base_score: must be a number"), std::string::npos);
}

TEST(ModelTest, TooManyTreesAndNodes) {
  json j = valid_model();
  json tree = j["trees"][1];
  j["trees"] = json::array();
  for (int i = 0; i < 513; ++i) j["trees"].push_back(tree);
  EXPECT_NE(error_of(j).find("$.trees: too many trees: 513 (at most 512)"), std::string::npos);
  j["trees"].erase(j["trees"].size() - 1);
  EXPECT_TRUE(std::holds_alternative<std::shared_ptr<const Model>>(Model::load(j.dump())));

  j = valid_model();
  json nodes = json::array();
  for (int i = 0; i < 128; ++i) {
    nodes.push_back({{"feature", 0}, {"threshold", i}, {"left", 2 * i + 1}, {"right", 2 * i + 2}});
  }
  for (int i = 0; i < 129; ++i) nodes.push_back({{"leaf", i}});
  j["trees"][0]["nodes"] = nodes;  // 257 nodes
  EXPECT_NE(error_of(j).find("$.trees[0].nodes: too many nodes: 257 (at most 256)"),
            std::string::npos);
}

TEST(ModelTest, HeaderFields) {
  json j = valid_model();
  j["format"] = "xgboost";
  EXPECT_NE(error_of(j).find("$.format: must be \"crawlgate-model\""), std::string::npos);
  j = valid_model();
  j["version"] = 2;
  EXPECT_NE(error_of(j).find("$.version: unsupported version 2"), std::string::npos);
  j = valid_model();
  j["link"] = "softmax";
  EXPECT_NE(error_of(j).find("$.link: unsupported link \"softmax\""), std::string::npos);
  j = valid_model();
  j["transform"] = {{"kind", "standardize"}};
  EXPECT_NE(error_of(j).find("$.transform.kind: unsupported transform"), std::string::npos);
  j = valid_model();
  j.erase("trees");
  EXPECT_NE(error_of(j).find("$: missing required member \"trees\""), std::string::npos);
  j = valid_model();
  j["trees"][0]["nodes"][0].erase("threshold");
  EXPECT_NE(error_of(j).find("$.trees[0].nodes[0]: missing required member \"threshold\""),
            std::string::npos);
  j = valid_model();
  j["trees"][0]["nodes"][2]["left"] = 1;
  EXPECT_NE(error_of(j).find("$.trees[0].nodes[2]: a leaf must not have \"left\""),
            std::string::npos);
  const auto array = Model::parse("[1, 2]");
  ASSERT_TRUE(std::holds_alternative<std::string>(array));
  EXPECT_NE(std::get<std::string>(array).find("$: must be an object"), std::string::npos);
}

}  // namespace
}  // namespace crawlgate

namespace crawlgate {
namespace {

// Reference evaluation straight from the JSON, against the flattened, interleaved walk.
double reference(const nlohmann::json& m, const FeatureVector& x) {
  double sum = m["base_score"].get<double>();
  for (const auto& tree : m["trees"]) {
    const auto& nodes = tree["nodes"];
    std::size_t i = 0;
    while (!nodes[i].contains("leaf")) {
      const auto& n = nodes[i];
      const std::size_t f = *FeatureVector::index_of(
          m["features"][n["feature"].get<std::size_t>()].get<std::string>());
      i = x[f] <= n["threshold"].get<double>() || std::isnan(x[f]) ? n["left"].get<std::size_t>()
                                                                   : n["right"].get<std::size_t>();
    }
    sum += nodes[i]["leaf"].get<double>();
  }
  return sum;
}

TEST(ModelTest, FlattenedWalkMatchesReferenceOnRandomTrees) {
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> unit(0, 1);
  nlohmann::json m = valid_model();
  m["features"] = nlohmann::json::array();
  for (auto name : FeatureVector::names()) m["features"].push_back(std::string(name));
  m["trees"] = nlohmann::json::array();
  for (int t = 0; t < 13; ++t) {  // 3 groups of four plus one, uneven shapes
    nlohmann::json nodes = nlohmann::json::array();
    // A random tree built by splitting random leaves; children listed in reverse on odd trees.
    nodes.push_back({{"leaf", unit(rng) - 0.5}});
    const int splits = 1 + static_cast<int>(rng() % 12);
    for (int s = 0; s < splits; ++s) {
      std::vector<std::size_t> leaves;
      for (std::size_t i = 0; i < nodes.size(); ++i) {
        if (nodes[i].contains("leaf")) leaves.push_back(i);
      }
      const std::size_t at = leaves[rng() % leaves.size()];
      const std::size_t l = nodes.size(), r = nodes.size() + 1;
      nodes.push_back({{"leaf", unit(rng) - 0.5}});
      nodes.push_back({{"leaf", unit(rng) - 0.5}});
      nodes[at] = {{"feature", rng() % FeatureVector::kSize},
                   {"threshold", unit(rng)},
                   {"left", t % 2 ? r : l},
                   {"right", t % 2 ? l : r}};
    }
    m["trees"].push_back({{"nodes", nodes}});
  }
  const auto model = must_load(m);
  ASSERT_TRUE(model);
  for (int k = 0; k < 500; ++k) {
    FeatureVector x;
    for (auto& v : x.values) v = k % 10 == 0 ? std::nan("") : unit(rng);
    ASSERT_DOUBLE_EQ(model->raw_score(x), reference(m, x)) << k;
  }
}

}  // namespace
}  // namespace crawlgate
