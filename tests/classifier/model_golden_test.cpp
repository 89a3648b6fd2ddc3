// The committed model scores in C++ exactly as the Python student did when it was exported: CI
// does not retrain, it checks this agreement on the golden set written by tools/train_model.py.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "crawlgate/classifier/features.h"
#include "crawlgate/classifier/model.h"

namespace crawlgate {
namespace {

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> fields;
  std::stringstream stream(line);
  for (std::string field; std::getline(stream, field, ',');) fields.push_back(field);
  return fields;
}

TEST(ModelGolden, CommittedModelAgreesWithPythonOnTheGoldenSet) {
  auto loaded = Model::load_file(CRAWLGATE_MODELS_DIR "/crawlgate-model.json");
  ASSERT_TRUE(std::holds_alternative<std::shared_ptr<const Model>>(loaded))
      << std::get<std::string>(loaded);
  const Model& model = *std::get<std::shared_ptr<const Model>>(loaded);

  std::ifstream golden(CRAWLGATE_MODELS_DIR "/golden.csv");
  ASSERT_TRUE(golden) << "classifier/models/golden.csv is missing";
  std::string line;
  ASSERT_TRUE(std::getline(golden, line));
  std::vector<std::string> header = split_csv(line);
  ASSERT_GE(header.size(), 2u);
  ASSERT_EQ(header.back(), "score");
  std::vector<std::size_t> index;
  for (std::size_t i = 0; i + 1 < header.size(); ++i) {
    auto feature = FeatureVector::index_of(header[i]);
    ASSERT_TRUE(feature) << "golden.csv names an unknown feature " << header[i];
    index.push_back(*feature);
  }
  std::size_t rows = 0;
  double worst = 0;
  while (std::getline(golden, line)) {
    if (line.empty()) continue;
    std::vector<std::string> fields = split_csv(line);
    ASSERT_EQ(fields.size(), header.size()) << line;
    FeatureVector x;
    for (std::size_t i = 0; i < index.size(); ++i) {
      x.values[index[i]] = fields[i].empty() ? std::nan("") : std::stod(fields[i]);
    }
    double expected = std::stod(fields.back());
    double actual = model.score(x);
    // The attribution behind "top" in the access log adds up to the raw score exactly.
    Model::Contributions shares = model.contributions(x);
    double sum = model.base_score() + model.expected_sum();
    for (double share : shares) sum += share;
    EXPECT_NEAR(sum, model.raw_score(x), 1e-9) << "row " << rows + 1;
    if (actual >= 0.954) {
      EXPECT_FALSE(model.top_features(x).empty()) << "row " << rows + 1;
    }
    worst = std::max(worst, std::fabs(actual - expected));
    EXPECT_NEAR(actual, expected, 1e-9) << "row " << rows + 1;
    ++rows;
  }
  EXPECT_GE(rows, 100u);
  RecordProperty("worst_abs_difference", std::to_string(worst));
}

}  // namespace
}  // namespace crawlgate
