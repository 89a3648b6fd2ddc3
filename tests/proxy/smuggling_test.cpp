// The request smuggling and desync corpus (tests/proxy/data/smuggling.txt, format described at its
// top): every case is sent as raw bytes to a fresh crawlgate in front of the lenient Beast test
// backend, and both what crawlgate answers and what reached the backend are checked.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "test_support.h"

namespace crawlgate::test {
namespace {

struct CorpusCase {
  std::string name;
  int line = 0;       // where the case starts in the corpus file
  std::string error;  // a malformed case: reported as a failure of its own
  std::string bytes;
  std::vector<int> statuses;
  bool close = true;
  int backend = -1;
  std::optional<std::string> target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<std::string> absent_headers;
  std::optional<std::string> body;
};

// gtest prints a failing parameter: the case name says more than its bytes.
void PrintTo(const CorpusCase& c, std::ostream* os) { *os << c.name; }

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes the BYTES escapes: \r \n \t \0 \\ \xHH \{N*TEXT}. Returns false on a bad escape.
bool unescape(std::string_view text, std::string& out) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      out.push_back(text[i]);
      continue;
    }
    if (++i == text.size()) return false;
    switch (text[i]) {
      case 'r':
        out.push_back('\r');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 't':
        out.push_back('\t');
        break;
      case '0':
        out.push_back('\0');
        break;
      case '\\':
        out.push_back('\\');
        break;
      case 'x': {
        if (i + 2 >= text.size()) return false;
        int high = hex_digit(text[i + 1]);
        int low = hex_digit(text[i + 2]);
        if (high < 0 || low < 0) return false;
        out.push_back(static_cast<char>(high * 16 + low));
        i += 2;
        break;
      }
      case '{': {
        std::size_t star = text.find('*', i);
        std::size_t end = text.find('}', i);
        if (star == std::string_view::npos || end == std::string_view::npos || star > end) {
          return false;
        }
        int count = std::atoi(std::string(text.substr(i + 1, star - i - 1)).c_str());
        std::string piece;
        if (count <= 0 || !unescape(text.substr(star + 1, end - star - 1), piece)) return false;
        for (int n = 0; n < count; ++n) out.append(piece);
        i = end;
        break;
      }
      default:
        return false;
    }
  }
  return true;
}

std::string validate(const CorpusCase& c) {
  if (c.bytes.empty()) return "no send line";
  if (c.statuses.empty() || c.backend < 0) return "no complete expect line";
  return {};
}

std::vector<CorpusCase> load_corpus() {
  std::vector<CorpusCase> cases;
  std::ifstream file(CRAWLGATE_SMUGGLING_CORPUS);
  if (!file) {
    CorpusCase missing;
    missing.name = "corpus_file_missing";
    missing.error = "cannot read " CRAWLGATE_SMUGGLING_CORPUS;
    return {missing};
  }
  std::string line;
  int number = 0;
  auto fail = [&](const std::string& why) {
    if (cases.empty()) cases.emplace_back().name = "corpus_syntax";
    CorpusCase& c = cases.back();
    if (c.error.empty()) c.error = "line " + std::to_string(number) + ": " + why;
  };
  while (std::getline(file, line)) {
    ++number;
    if (line.empty() || line.front() == '#') continue;
    if (line.back() == ' ' || line.back() == '\t') {
      fail("ends in whitespace (write \\x20 or \\t)");
      continue;
    }
    std::size_t space = line.find(' ');
    std::string key = line.substr(0, space);
    std::string value = space == std::string::npos ? "" : line.substr(space + 1);
    if (key == "case") {
      if (!cases.empty() && cases.back().error.empty()) cases.back().error = validate(cases.back());
      CorpusCase& c = cases.emplace_back();
      c.name = value;
      c.line = number;
      continue;
    }
    if (cases.empty()) {
      fail("'" + key + "' before the first case");
      continue;
    }
    CorpusCase& c = cases.back();
    if (key == "send") {
      if (!unescape(value, c.bytes)) fail("bad escape in send");
    } else if (key == "expect") {
      std::istringstream words(value);
      std::string word;
      c.statuses.clear();
      while (words >> word) {
        if (word == "close" || word == "keep") {
          c.close = word == "close";
        } else if (word.starts_with("backend=")) {
          c.backend = std::atoi(word.c_str() + 8);
        } else if (int status = std::atoi(word.c_str()); status >= 100 && status <= 599) {
          c.statuses.push_back(status);
        } else {
          fail("unknown expect word '" + word + "'");
        }
      }
    } else if (key == "target") {
      c.target.emplace();
      if (!unescape(value, *c.target)) fail("bad escape in target");
    } else if (key == "header") {
      std::size_t colon = value.find(": ");
      std::string expected;
      if (colon == std::string::npos || !unescape(value.substr(colon + 2), expected)) {
        fail("header needs NAME: VALUE");
        continue;
      }
      c.headers.emplace_back(value.substr(0, colon), expected);
    } else if (key == "no-header") {
      c.absent_headers.push_back(value);
    } else if (key == "body") {
      c.body.emplace();
      if (!unescape(value, *c.body)) fail("bad escape in body");
    } else {
      fail("unknown key '" + key + "'");
    }
  }
  if (!cases.empty() && cases.back().error.empty()) cases.back().error = validate(cases.back());
  return cases;
}

// The backend's /echo answer: "METHOD TARGET\n", "Name: value\n"..., "\n", the body.
struct Echo {
  std::string request_line;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool valid = false;
};

Echo parse_echo(const std::string& text) {
  Echo echo;
  std::size_t end = text.find("\n\n");
  std::size_t first = text.find('\n');
  if (end == std::string::npos || first == std::string::npos) return echo;
  echo.request_line = text.substr(0, first);
  echo.body = text.substr(end + 2);
  std::istringstream lines(text.substr(first + 1, end - first));
  for (std::string field; std::getline(lines, field) && !field.empty();) {
    std::size_t colon = field.find(": ");
    if (colon == std::string::npos) return echo;
    echo.headers.emplace_back(field.substr(0, colon), field.substr(colon + 2));
  }
  echo.valid = true;
  return echo;
}

class SmugglingCorpusTest : public ::testing::TestWithParam<CorpusCase> {
 protected:
  TestBackend backend_;
  std::unique_ptr<RunningProxy> proxy_;
};

TEST_P(SmugglingCorpusTest, AnswerAndBackendView) {
  const CorpusCase& c = GetParam();
  ASSERT_TRUE(c.error.empty()) << c.name << ": " << c.error;
  SCOPED_TRACE(std::string(CRAWLGATE_SMUGGLING_CORPUS) + ":" + std::to_string(c.line) + " " +
               c.name);
  ServerSettings settings = test_settings();
  // Short, so that the one case Beast can only end by timeout does not hold the suite.
  settings.timeouts.body_read = std::chrono::milliseconds(1000);
  proxy_ = std::make_unique<RunningProxy>(backend_.port(), settings);

  {
    RawClient client(proxy_->port());
    client.send(c.bytes);
    std::vector<Response> responses;
    for (int expected : c.statuses) {
      auto response = client.read_response();
      ASSERT_TRUE(response) << "no answer where " << expected << " was expected";
      EXPECT_EQ(response->status, expected) << response->body;
      responses.push_back(std::move(*response));
    }

    if (c.target || !c.headers.empty() || !c.absent_headers.empty() || c.body) {
      Echo echo = parse_echo(responses.front().body);
      ASSERT_TRUE(echo.valid) << "not an /echo answer: " << responses.front().body;
      if (c.target) {
        EXPECT_EQ(echo.request_line, *c.target);
      }
      for (const auto& [name, value] : c.headers) {
        std::vector<std::string> seen;
        for (const auto& [key, got] : echo.headers) {
          if (iequals(key, name)) seen.push_back(got);
        }
        EXPECT_EQ(seen, std::vector<std::string>{value}) << "header " << name;
      }
      for (const std::string& name : c.absent_headers) {
        for (const auto& [key, got] : echo.headers) {
          EXPECT_FALSE(iequals(key, name)) << name << " reached the backend: " << got;
        }
      }
      if (c.body) {
        EXPECT_EQ(echo.body, *c.body);
      }
    }

    if (c.close) {
      const Response& last = responses.back();
      if (last.version == 11) {
        EXPECT_EQ(last.header("Connection"), "close");
      }
      EXPECT_TRUE(client.closed_by_peer()) << "the connection was left open";
    } else {
      EXPECT_NE(responses.back().header("Connection"), "close");
      client.send("GET /-probe HTTP/1.1\r\nHost: a\r\n\r\n");
      auto probe = client.read_response();
      ASSERT_TRUE(probe) << "the connection is not usable after the case";
      EXPECT_EQ(probe->status, 200);
      EXPECT_EQ(probe->body, "ok /-probe");
    }
  }

  // Closing the proxy closes its pooled upstream connections; then the count is final.
  proxy_.reset();
  int probes = c.close ? 0 : 1;
  EXPECT_EQ(backend_.settled_requests() - probes, c.backend) << "requests the backend received";
}

INSTANTIATE_TEST_SUITE_P(Corpus, SmugglingCorpusTest, ::testing::ValuesIn(load_corpus()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace crawlgate::test
