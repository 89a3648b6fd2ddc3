// crawlgate-features LOG.jsonl [--out FILE]: the feature CSV of docs/model.md from an access log.
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

#include "crawlgate/classifier/log_features.h"

namespace {
int usage() {
  std::cerr << "usage: crawlgate-features LOG.jsonl [--out FILE]\n"
               "  Replays a crawlgate JSON-lines access log through the behavioural features and\n"
               "  writes CSV (line,client,<features...>) to FILE or standard output.\n"
               "  LOG.jsonl may be - for standard input.\n";
  return 2;
}
}  // namespace

int main(int argc, char** argv) {
  std::string input, output;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--out" || arg == "-o") {
      if (++i >= argc) return usage();
      output = argv[i];
    } else if (arg.rfind("--out=", 0) == 0) {
      output = arg.substr(6);
    } else if (arg == "-h" || arg == "--help") {
      usage();
      return 0;
    } else if (input.empty() && (arg == "-" || arg[0] != '-')) {
      input = arg;
    } else {
      return usage();
    }
  }
  if (input.empty()) return usage();

  std::ifstream file;
  std::istream* in = &std::cin;
  if (input != "-") {
    file.open(input, std::ios::binary);
    if (!file) {
      std::cerr << "crawlgate-features: cannot open " << input << ": " << std::strerror(errno) << "\n";
      return 1;
    }
    in = &file;
  }
  std::ofstream out_file;
  std::ostream* out = &std::cout;
  if (!output.empty()) {
    out_file.open(output, std::ios::binary | std::ios::trunc);
    if (!out_file) {
      std::cerr << "crawlgate-features: cannot write " << output << ": " << std::strerror(errno) << "\n";
      return 1;
    }
    out = &out_file;
  }
  std::ios::sync_with_stdio(false);
  const crawlgate::ExtractStats stats = crawlgate::extract_features(*in, *out);
  out->flush();
  if (!*out) {
    std::cerr << "crawlgate-features: write error\n";
    return 1;
  }
  std::cerr << "crawlgate-features: " << stats.rows << " rows from " << stats.lines << " lines, "
            << stats.skipped << " skipped";
  if (!stats.first_error.empty()) std::cerr << " (first: " << stats.first_error << ")";
  std::cerr << "\n";
  return 0;
}
