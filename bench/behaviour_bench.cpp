// behaviour_bench: the per-request cost of the behavioural classifier, BehaviourTable::update
// (request analysis + client and block state + feature vector) plus Model::score with a 50-tree,
// depth-4 model, for a realistic Chrome navigation (13 header fields, Referer, Cookie).
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "crawlgate/classifier/features.h"
#include "crawlgate/classifier/model.h"

namespace crawlgate {
namespace {

// A random but valid model: `trees` complete binary trees of the given depth over every feature.
std::shared_ptr<const Model> make_model(int trees, int depth) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> unit(0, 1);
  std::string j = R"({"format":"crawlgate-model","version":1,"features":[)";
  const auto& names = FeatureVector::names();
  for (std::size_t i = 0; i < names.size(); ++i) {
    j += (i ? ",\"" : "\"") + std::string(names[i]) + "\"";
  }
  j += R"(],"transform":{"kind":"none"},"kind":"trees","base_score":-1.0,"link":"logistic","trees":[)";
  const int splits = (1 << depth) - 1, nodes = (1 << (depth + 1)) - 1;
  for (int t = 0; t < trees; ++t) {
    j += t ? ",{\"nodes\":[" : "{\"nodes\":[";
    for (int n = 0; n < nodes; ++n) {
      if (n) j += ",";
      if (n < splits) {
        j += "{\"feature\":" + std::to_string(rng() % names.size()) +
             ",\"threshold\":" + std::to_string(unit(rng)) + ",\"left\":" +
             std::to_string(2 * n + 1) + ",\"right\":" + std::to_string(2 * n + 2) + "}";
      } else {
        j += "{\"leaf\":" + std::to_string(unit(rng) - 0.5) + "}";
      }
    }
    j += "]}";
  }
  j += "]}";
  auto result = Model::parse(j);
  if (auto* error = std::get_if<std::string>(&result)) {
    fprintf(stderr, "model: %s\n", error->c_str());
    std::abort();
  }
  return std::get<std::shared_ptr<const Model>>(result);
}

const std::vector<HeaderField> kHeaders = {
    {"Host", "wiki.example.org"},
    {"Connection", "keep-alive"},
    {"sec-ch-ua", "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\""},
    {"sec-ch-ua-mobile", "?0"},
    {"sec-ch-ua-platform", "\"Windows\""},
    {"Upgrade-Insecure-Requests", "1"},
    {"User-Agent",
     "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36"},
    {"Accept",
     "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"},
    {"Sec-Fetch-Site", "same-origin"},
    {"Sec-Fetch-Mode", "navigate"},
    {"Sec-Fetch-Dest", "document"},
    {"Referer", "https://wiki.example.org/wiki/Main_Page"},
    {"Accept-Encoding", "gzip, deflate, br, zstd"},
    {"Accept-Language", "en-GB,en;q=0.9,de;q=0.8"},
    {"Cookie", "session=4f2a9c1e8b7d; prefs=dark"},
};

RequestView request(const IpAddress& ip, const std::string& target) {
  RequestView v;
  v.method = "GET";
  v.target = target;
  v.version = 11;
  v.headers = kHeaders;
  v.client_ip = ip;
  v.peer_ip = ip;
  return v;
}

std::vector<std::string> targets() {
  std::vector<std::string> t;
  for (int i = 0; i < 64; ++i) t.push_back("/wiki/Article_number_" + std::to_string(i * 37));
  return t;
}

// `clients` distinct addresses (in `clients / 16` blocks), round-robin, one request each turn.
void BM_UpdateAndScore(benchmark::State& state) {
  const auto model = make_model(50, 4);
  const std::size_t clients = static_cast<std::size_t>(state.range(0));
  BehaviourTable::Options o;
  o.max_clients = std::max<std::size_t>(clients * 2, 1024);
  BehaviourTable table(o);
  std::vector<IpAddress> ips;
  for (std::size_t i = 0; i < clients; ++i) {
    ips.push_back(IpAddress::v4(0x0A000000u + static_cast<uint32_t>((i / 16) << 8 | (i % 16))));
  }
  const auto paths = targets();
  Nanos now = 1'000'000'000;
  std::size_t i = 0;
  double sum = 0;
  for (auto _ : state) {
    const RequestView v = request(ips[i % clients], paths[i % paths.size()]);
    const FeatureVector f = table.update(v, -1, now);
    sum += model->score(f);
    now += 1'000'000;
    ++i;
  }
  benchmark::DoNotOptimize(sum);
  state.counters["bytes_per_client"] = static_cast<double>(BehaviourTable::bytes_per_client());
}
BENCHMARK(BM_UpdateAndScore)->Arg(1)->Arg(10'000)->Arg(200'000);

void BM_UpdateOnly(benchmark::State& state) {
  BehaviourTable table;
  const IpAddress ip = IpAddress::v4(0x0A000001u);
  const auto paths = targets();
  Nanos now = 1'000'000'000;
  std::size_t i = 0;
  for (auto _ : state) {
    const FeatureVector f = table.update(request(ip, paths[i++ % paths.size()]), -1, now);
    benchmark::DoNotOptimize(f);
    now += 1'000'000;
  }
}
BENCHMARK(BM_UpdateOnly);

void BM_ScoreOnly(benchmark::State& state) {
  const auto model = make_model(50, 4);
  BehaviourTable table;
  const FeatureVector f = table.update(request(IpAddress::v4(1), "/wiki/A"), -1, 1'000'000'000);
  for (auto _ : state) benchmark::DoNotOptimize(model->score(f));
}
BENCHMARK(BM_ScoreOnly);

// What a flagged request adds for the access log's "top": the attribution walk and its text
// (same model as BM_ScoreOnly).
void BM_TopFeatures(benchmark::State& state) {
  const auto model = make_model(50, 4);
  BehaviourTable table;
  const FeatureVector f = table.update(request(IpAddress::v4(1), "/wiki/A"), -1, 1'000'000'000);
  for (auto _ : state) benchmark::DoNotOptimize(model->top_features(f));
}
BENCHMARK(BM_TopFeatures);

}  // namespace
}  // namespace crawlgate

BENCHMARK_MAIN();
