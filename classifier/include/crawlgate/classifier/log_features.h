// Offline feature extraction: replays a crawlgate JSON-lines access log (README.md, "Access log")
// through BehaviourTable, in the log's own time, and writes the CSV of docs/model.md:
//   line,client,<feature names...>
// one row per request, the feature vector as it stood after that request. `line` is the 1-based
// line number in the log, `client` the logged "ip". Used by tools/crawlgate-features.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace crawlgate {

struct ExtractStats {
  std::size_t lines = 0;     // lines read (blank lines included)
  std::size_t rows = 0;      // CSV rows written
  std::size_t skipped = 0;   // lines that were not a usable request record
  std::string first_error;   // why the first skipped line was skipped ("line N: ...")
};

// Writes the header and one row per usable line. Lines that fail to parse, or lack "ts", "ip",
// "method" or "target", are skipped and counted; blank lines are ignored (not counted as skipped).
ExtractStats extract_features(std::istream& log, std::ostream& csv);

// The CSV header line (without newline).
std::string feature_csv_header();

}  // namespace crawlgate
