// Helpers for tests that run the crawlgate binary as a subprocess, as operators do.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "../proxy/test_support.h"

extern char** environ;

namespace crawlgate::test {

namespace fs = std::filesystem;

inline uint16_t free_port() {
  net::io_context ioc;
  tcp::acceptor probe(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  return probe.local_endpoint().port();
}

inline std::string temp_file(const std::string& name, const std::string& content) {
  fs::path path = fs::path(::testing::TempDir()) / name;
  std::ofstream(path) << content;
  return path.string();
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A child process with stdout/stderr captured in files.
class Child {
 public:
  explicit Child(std::vector<std::string> args) {
    static int counter = 0;
    std::string base = ::testing::TempDir() + "/child" + std::to_string(getpid()) + "_" +
                       std::to_string(counter++);
    out_path_ = base + ".out";
    err_path_ = base + ".err";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    args.insert(args.begin(), CRAWLGATE_BINARY);
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    int rc = posix_spawn(&pid_, CRAWLGATE_BINARY, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) pid_ = -1;
  }
  ~Child() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }
  pid_t pid() const { return pid_; }
  // Exit code, or 128 + signal; -1 if it did not end within the bound.
  int wait(int max_ms = 30'000) {
    for (int waited = 0; waited <= max_ms; waited += 10) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
  std::string out() const { return read_file(out_path_); }
  std::string err() const { return read_file(err_path_); }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string out_path_, err_path_;
};

inline int run_to_end(std::vector<std::string> args, std::string* out = nullptr, std::string* err = nullptr) {
  Child child(std::move(args));
  int code = child.wait();
  if (out) *out = child.out();
  if (err) *err = child.err();
  return code;
}

// Peak resident set size of a process, in KiB (VmHWM).
inline long peak_rss_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmHWM:")) return std::stol(line.substr(6));
  }
  return -1;
}

inline bool wait_until_ready(uint16_t admin_port) {
  for (int attempt = 0; attempt < 500; ++attempt) {
    try {
      auto response = request(admin_port, "GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n");
      if (response && response->status == 200) return true;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}


// The value of an unlabelled sample in a /metrics page, or -1.
inline double metric_value(const std::string& page, const std::string& name) {
  std::istringstream lines(page);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

inline std::string scrape(uint16_t admin_port) {
  auto response = request(admin_port, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
  return response ? response->body : std::string();
}

}  // namespace crawlgate::test
