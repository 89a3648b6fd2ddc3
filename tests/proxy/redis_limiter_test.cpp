// RedisLimiter against a real redis-server that each test starts on a free port with its own
// temporary directory (never the system instance on 6379), kills, stops (SIGSTOP) and restarts.
// Waits are bounded; no assertion depends on how fast a reply comes, except that a check
// completes within generous bounds.
#include <utility>  // before Asio (GCC 12)
#include <boost/asio.hpp>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "redis_limiter.h"

extern char** environ;

namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using crawlgate::proxy::RedisLimiter;
using crawlgate::proxy::RedisLimitRequest;
using crawlgate::proxy::RedisLimitResult;
using crawlgate::proxy::RedisOptions;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

bool redis_available() { return std::system("command -v redis-server >/dev/null 2>&1") == 0; }

uint16_t free_port() {
  net::io_context ioc;
  tcp::acceptor acceptor(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();
}

// Sends one command in RESP and returns the first line of the reply ("+OK", ":12", "-ERR ..."),
// or "" when the server does not answer within `timeout`.
std::string redis_command(uint16_t port, const std::vector<std::string>& args,
                          std::chrono::milliseconds timeout = 3000ms) {
  try {
    net::io_context ioc;
    tcp::socket socket(ioc);
    socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    timeval tv{};
    tv.tv_sec = timeout.count() / 1000;
    tv.tv_usec = (timeout.count() % 1000) * 1000;
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string out;  // appends only: GCC 12 -O3 warns (-Wrestrict) on "lit" + std::string
    out.append("*").append(std::to_string(args.size())).append("\r\n");
    for (const auto& a : args) {
      out.append("$").append(std::to_string(a.size())).append("\r\n").append(a).append("\r\n");
    }
    net::write(socket, net::buffer(out));
    std::string line;
    char c;
    while (true) {
      boost::system::error_code ec;
      std::size_t n = socket.read_some(net::buffer(&c, 1), ec);
      if (ec || n == 0) return "";
      if (c == '\n') break;
      if (c != '\r') line += c;
    }
    return line;
  } catch (const std::exception&) {
    return "";
  }
}

// One redis-server child: its own port and temporary directory, no persistence.
class RedisProcess {
 public:
  explicit RedisProcess(uint16_t port, bool debug_command = false, bool also_ipv6 = false)
      : port_(port), debug_command_(debug_command), also_ipv6_(also_ipv6) {
    char dir_template[] = "/tmp/crawlgate-redis-test-XXXXXX";
    dir_ = ::mkdtemp(dir_template);
  }
  ~RedisProcess() {
    kill();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  RedisProcess(const RedisProcess&) = delete;
  RedisProcess& operator=(const RedisProcess&) = delete;

  uint16_t port() const { return port_; }

  // Starts the server and waits (bounded) until it answers PING.
  bool start() {
    if (pid_ > 0) return true;
    std::vector<std::string> args = {"redis-server", "--port", std::to_string(port_),
                                     "--bind", also_ipv6_ ? "127.0.0.1 -::1" : "127.0.0.1",
                                     "--save", "", "--appendonly", "no",
                                     "--dir", dir_, "--logfile", dir_ + "/redis.log",
                                     "--daemonize", "no"};
    if (debug_command_) {
      args.push_back("--enable-debug-command");
      args.push_back("local");
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    if (::posix_spawnp(&pid, "redis-server", nullptr, nullptr, argv.data(), environ) != 0) {
      return false;
    }
    pid_ = pid;
    const auto until = Clock::now() + 10s;
    while (Clock::now() < until) {
      if (redis_command(port_, {"PING"}, 500ms) == "+PONG") return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  void pause() { ::kill(pid_, SIGSTOP); }
  void resume() { ::kill(pid_, SIGCONT); }

 private:
  uint16_t port_;
  bool debug_command_;
  bool also_ipv6_;  // "-::1": also on ::1 when the host has IPv6 (for "localhost")
  std::string dir_;
  pid_t pid_ = -1;
};

// A worker: one io_context run by one thread, as in the server.
class IoThread {
 public:
  IoThread() : guard_(net::make_work_guard(ioc)), thread_([this] { ioc.run(); }) {}
  ~IoThread() { join(); }
  void join() {
    guard_.reset();
    ioc.stop();
    if (thread_.joinable()) thread_.join();
  }
  std::thread::id id() const { return thread_.get_id(); }
  net::io_context ioc{1};

 private:
  net::executor_work_guard<net::io_context::executor_type> guard_;
  std::thread thread_;
};

using Answer = std::optional<RedisLimitResult>;

struct Harness {
  explicit Harness(RedisOptions options) {
    limiter = std::make_shared<RedisLimiter>(io.ioc, std::move(options));
    limiter->start();
  }
  ~Harness() {
    run([this] {
      if (limiter) limiter->stop();
    });
    io.join();
    limiter.reset();  // the io thread is gone: no race with its handlers
  }

  void run(std::function<void()> fn) {
    std::promise<void> finished;
    auto future = finished.get_future();
    net::post(io.ioc, [&] {
      fn();
      finished.set_value();
    });
    future.wait_for(10s);
  }

  // Posts checks onto the worker; the outer optional is empty if one did not complete in time.
  std::optional<std::vector<Answer>> check_many(std::vector<RedisLimitRequest> requests,
                                                std::chrono::milliseconds timeout = 10000ms) {
    struct State {
      std::mutex mutex;
      std::condition_variable cv;
      std::vector<Answer> answers;
      std::size_t count = 0;
      bool wrong_thread = false;
    };
    auto state = std::make_shared<State>();
    state->answers.resize(requests.size());
    const auto io_id = io.id();
    net::post(io.ioc, [this, requests, state, io_id] {
      for (std::size_t i = 0; i < requests.size(); ++i) {
        limiter->check(requests[i], [state, i, io_id](Answer answer) {
          std::lock_guard lock(state->mutex);
          if (std::this_thread::get_id() != io_id) state->wrong_thread = true;
          state->answers[i] = answer;
          ++state->count;
          state->cv.notify_all();
        });
      }
    });
    std::unique_lock lock(state->mutex);
    if (!state->cv.wait_for(lock, timeout, [&] { return state->count == requests.size(); })) {
      return std::nullopt;
    }
    EXPECT_FALSE(state->wrong_thread) << "done must run on the limiter's io_context";
    return state->answers;
  }

  std::optional<Answer> check(const RedisLimitRequest& request,
                              std::chrono::milliseconds timeout = 10000ms) {
    auto answers = check_many({request}, timeout);
    if (!answers) return std::nullopt;
    return (*answers)[0];
  }

  bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
    const auto until = Clock::now() + timeout;
    while (Clock::now() < until) {
      if (condition()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return condition();
  }
  bool wait_connected(std::chrono::milliseconds timeout = 15000ms) {
    return wait_until([this] { return limiter->connected(); }, timeout);
  }

  IoThread io;
  std::shared_ptr<RedisLimiter> limiter;
};

RedisOptions test_options(uint16_t port) {
  RedisOptions options;
  options.port = port;
  options.budget = 2000ms;  // generous: tests check semantics, not latency (2 shared cores)
  options.connect_timeout = 2000ms;
  options.key_prefix = "crawlgate-test:";
  options.reconnect_backoff = 50ms;
  options.reconnect_backoff_max = 400ms;
  return options;
}

RedisLimitRequest req(std::string key, double rate, double burst, double cost = 1) {
  return RedisLimitRequest{std::move(key), rate, burst, cost};
}

class RedisLimiterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!redis_available()) GTEST_SKIP() << "redis-server not installed (scripts/deps.sh)";
  }
};

TEST_F(RedisLimiterTest, ExactGcraAdmission) {
  RedisProcess redis(free_port());
  ASSERT_TRUE(redis.start());
  Harness h(test_options(redis.port()));
  ASSERT_TRUE(h.wait_connected());

  // burst 5, 1/s: five at once, the sixth refused with a retry of at most one interval.
  for (int i = 0; i < 5; ++i) {
    auto answer = h.check(req("K", 1, 5));
    ASSERT_TRUE(answer.has_value()) << "check " << i << " did not complete";
    ASSERT_TRUE(answer->has_value()) << "check " << i << " fell back";
    EXPECT_TRUE((*answer)->allowed) << i;
    EXPECT_EQ((*answer)->remaining, 4 - i);
    EXPECT_EQ((*answer)->retry_after_seconds, 0);
    EXPECT_GT((*answer)->reset_after_seconds, i);
    EXPECT_LE((*answer)->reset_after_seconds, i + 1);
  }
  auto sixth = h.check(req("K", 1, 5));
  ASSERT_TRUE(sixth && *sixth);
  EXPECT_FALSE((*sixth)->allowed);
  EXPECT_GT((*sixth)->retry_after_seconds, 0.0);
  EXPECT_LE((*sixth)->retry_after_seconds, 1.0);
  EXPECT_EQ((*sixth)->remaining, 0);

  // Another key has its own budget.
  auto other = h.check(req("K2", 1, 5));
  ASSERT_TRUE(other && *other);
  EXPECT_TRUE((*other)->allowed);
  EXPECT_EQ((*other)->remaining, 4);

  // Fractional costs: 2.5 + 2.5 fill a burst of 5; the third waits 2.5 intervals at most.
  auto c1 = h.check(req("C", 1, 5, 2.5));
  auto c2 = h.check(req("C", 1, 5, 2.5));
  auto c3 = h.check(req("C", 1, 5, 2.5));
  ASSERT_TRUE(c1 && *c1 && c2 && *c2 && c3 && *c3);
  EXPECT_TRUE((*c1)->allowed);
  EXPECT_EQ((*c1)->remaining, 2);
  EXPECT_TRUE((*c2)->allowed);
  EXPECT_EQ((*c2)->remaining, 0);
  EXPECT_FALSE((*c3)->allowed);
  EXPECT_GT((*c3)->retry_after_seconds, 1.5);
  EXPECT_LE((*c3)->retry_after_seconds, 2.5);

  // A fractional interval (3/s, burst 3): rounding must not refuse the third.
  auto f = h.check_many({req("F", 3, 3), req("F", 3, 3), req("F", 3, 3), req("F", 3, 3)});
  ASSERT_TRUE(f);
  ASSERT_TRUE((*f)[0] && (*f)[1] && (*f)[2] && (*f)[3]);
  EXPECT_TRUE((*f)[0]->allowed && (*f)[1]->allowed && (*f)[2]->allowed);
  EXPECT_FALSE((*f)[3]->allowed);

  // Keys carry the prefix and expire (PEXPIRE = reset_after), so they do not pile up.
  const std::string ttl = redis_command(redis.port(), {"PTTL", "crawlgate-test:K"});
  ASSERT_FALSE(ttl.empty());
  ASSERT_EQ(ttl[0], ':');
  EXPECT_GT(std::stol(ttl.substr(1)), 0);
  EXPECT_LE(std::stol(ttl.substr(1)), 5000);
  EXPECT_EQ(h.limiter->fallbacks(), 0u);
  EXPECT_TRUE(h.limiter->connected());
}

TEST_F(RedisLimiterTest, InvalidRequestFallsBack) {
  RedisProcess redis(free_port());
  ASSERT_TRUE(redis.start());
  Harness h(test_options(redis.port()));
  ASSERT_TRUE(h.wait_connected());
  auto answers = h.check_many({req("X", 0, 5), req("X", 1, -1), req("X", 1, 5, -1),
                               req("X", std::numeric_limits<double>::infinity(), 5)});
  ASSERT_TRUE(answers);
  for (const auto& a : *answers) EXPECT_FALSE(a.has_value());
  EXPECT_EQ(h.limiter->fallbacks(), 4u);
}

TEST_F(RedisLimiterTest, HostNameIsResolvedWithoutBlocking) {
  RedisProcess redis(free_port(), false, /*also_ipv6=*/true);
  ASSERT_TRUE(redis.start());
  RedisOptions options = test_options(redis.port());
  options.host = "localhost";  // async_resolve, not hiredis's blocking getaddrinfo
  Harness h(options);
  ASSERT_TRUE(h.wait_connected());
  auto answer = h.check(req("K", 1, 5));
  ASSERT_TRUE(answer && *answer);
  EXPECT_TRUE((*answer)->allowed);

  RedisOptions bad = test_options(redis.port());
  bad.host = "no-such-host.invalid";
  Harness unresolved(bad);
  auto fallback = unresolved.check(req("K", 1, 5), 2000ms);
  ASSERT_TRUE(fallback.has_value());
  EXPECT_FALSE(fallback->has_value());
  EXPECT_FALSE(unresolved.limiter->connected());
}

TEST_F(RedisLimiterTest, TwoInstancesShareOneBudget) {
  RedisProcess redis(free_port());
  ASSERT_TRUE(redis.start());
  Harness a(test_options(redis.port()));
  Harness b(test_options(redis.port()));
  ASSERT_TRUE(a.wait_connected());
  ASSERT_TRUE(b.wait_connected());
  // One request per 10 s, burst 5: alternating between the instances, five pass in total.
  int allowed = 0;
  int refused = 0;
  for (int i = 0; i < 8; ++i) {
    Harness& h = (i % 2 == 0) ? a : b;
    auto answer = h.check(req("shared", 0.1, 5));
    ASSERT_TRUE(answer && *answer) << i;
    if ((*answer)->allowed) {
      ++allowed;
      EXPECT_LT(i, 5) << "admitted past the combined burst";
    } else {
      ++refused;
      EXPECT_GT((*answer)->retry_after_seconds, 0);
      EXPECT_LE((*answer)->retry_after_seconds, 10.0);
    }
  }
  EXPECT_EQ(allowed, 5);
  EXPECT_EQ(refused, 3);
}

TEST_F(RedisLimiterTest, DownAtStartFallsBackThenConnects) {
  RedisProcess redis(free_port());  // not started yet
  Harness h(test_options(redis.port()));
  auto answer = h.check(req("K", 1, 5), 2000ms);  // "at once": well within 2 s
  ASSERT_TRUE(answer.has_value()) << "check hung while Redis is down";
  EXPECT_FALSE(answer->has_value());
  EXPECT_FALSE(h.limiter->connected());
  EXPECT_GE(h.limiter->fallbacks(), 1u);

  ASSERT_TRUE(redis.start());
  ASSERT_TRUE(h.wait_connected()) << "did not connect after Redis came up";
  auto later = h.check(req("K", 1, 5));
  ASSERT_TRUE(later && *later);
  EXPECT_TRUE((*later)->allowed);
  EXPECT_EQ(h.limiter->reconnects(), 1u);
}

TEST_F(RedisLimiterTest, KilledServerFallsBackAndRecoversOnRestart) {
  RedisProcess redis(free_port());
  ASSERT_TRUE(redis.start());
  Harness h(test_options(redis.port()));
  ASSERT_TRUE(h.wait_connected());
  auto first = h.check(req("K", 0.1, 100));
  ASSERT_TRUE(first && *first);

  redis.kill();
  // Every check answers (nullopt) and none hangs, whether or not the loss was noticed yet.
  for (int i = 0; i < 20; ++i) {
    auto answer = h.check(req("K", 0.1, 100), 5000ms);
    ASSERT_TRUE(answer.has_value()) << "check hung after the kill";
    EXPECT_FALSE(answer->has_value());
  }
  ASSERT_TRUE(h.wait_until([&] { return !h.limiter->connected(); }, 5000ms));
  auto down = h.check(req("K", 0.1, 100), 2000ms);
  ASSERT_TRUE(down.has_value());
  EXPECT_FALSE(down->has_value());

  ASSERT_TRUE(redis.start());  // same port, empty data set, empty script cache
  ASSERT_TRUE(h.wait_connected());
  auto answers = h.check_many({req("K", 0.1, 100), req("K", 0.1, 100), req("K", 0.1, 100)});
  ASSERT_TRUE(answers);
  for (const auto& a : *answers) {
    ASSERT_TRUE(a.has_value());
    EXPECT_TRUE(a->allowed);
  }
  EXPECT_EQ((*answers)[2]->remaining, 97);  // the restarted server starts from a full burst
  EXPECT_EQ(h.limiter->reconnects(), 1u);
  // Every new connection loads the script before its first EVALSHA: no NOSCRIPT round trip
  // after a restart (NoScriptReloadsOnceAndRetries covers a cache flushed under a connection).
  EXPECT_EQ(h.limiter->script_reloads(), 0u);
}

TEST_F(RedisLimiterTest, NoScriptReloadsOnceAndRetries) {
  RedisProcess redis(free_port());
  ASSERT_TRUE(redis.start());
  Harness h(test_options(redis.port()));
  ASSERT_TRUE(h.wait_connected());
  ASSERT_TRUE(h.check(req("K", 0.1, 100)).value().has_value());
  ASSERT_EQ(h.limiter->script_reloads(), 0u);

  ASSERT_EQ(redis_command(redis.port(), {"SCRIPT", "FLUSH"}), "+OK");
  // Twenty EVALSHAs in one batch all meet NOSCRIPT; one SCRIPT LOAD serves all their retries.
  std::vector<RedisLimitRequest> batch(20, req("K", 0.1, 100));
  auto answers = h.check_many(batch);
  ASSERT_TRUE(answers);
  int allowed = 0;
  for (const auto& a : *answers) {
    ASSERT_TRUE(a.has_value()) << "NOSCRIPT was not retried";
    allowed += a->allowed;
  }
  EXPECT_EQ(allowed, 20);
  EXPECT_EQ(h.limiter->script_reloads(), 1u);
  EXPECT_EQ(h.limiter->fallbacks(), 0u);
  EXPECT_TRUE(h.limiter->connected());
}

TEST_F(RedisLimiterTest, StoppedServerAnswersWithinBudgetThenRecovers) {
  RedisProcess redis(free_port());
  ASSERT_TRUE(redis.start());
  RedisOptions options = test_options(redis.port());
  options.budget = 50ms;
  options.connect_timeout = 30000ms;  // keep the connection: the late replies come back on it
  Harness h(options);
  ASSERT_TRUE(h.wait_connected());

  redis.pause();  // SIGSTOP: the TCP connection stays up, nothing answers
  for (int i = 0; i < 5; ++i) {
    const auto started = Clock::now();
    auto answer = h.check(req("S", 0.001, 1000), 5000ms);
    ASSERT_TRUE(answer.has_value()) << "check not answered while Redis is stopped";
    EXPECT_FALSE(answer->has_value());
    EXPECT_LT(Clock::now() - started, 3s);  // generous: the budget is 50 ms
  }
  EXPECT_GE(h.limiter->fallbacks(), 5u);
  redis.resume();

  // The late replies are dropped (done already ran); fresh checks get answers again.
  bool recovered = h.wait_until(
      [&] {
        auto answer = h.check(req("S", 0.001, 1000), 5000ms);
        return answer && answer->has_value() && (*answer)->allowed;
      },
      15000ms);
  EXPECT_TRUE(recovered);
  EXPECT_TRUE(h.limiter->connected());
  EXPECT_EQ(h.limiter->reconnects(), 0u);
}

TEST_F(RedisLimiterTest, HungConnectionIsResetAndRecovers) {
  RedisProcess redis(free_port(), /*debug_command=*/true);
  ASSERT_TRUE(redis.start());
  RedisOptions options = test_options(redis.port());
  options.budget = 50ms;
  options.connect_timeout = 300ms;  // no reply for 300 ms -> the connection is considered hung
  Harness h(options);
  ASSERT_TRUE(h.wait_connected());

  std::thread sleeper([&] { redis_command(redis.port(), {"DEBUG", "SLEEP", "1.5"}, 5000ms); });
  // Checks keep flowing while Redis sleeps: each answers (nullopt after the 50 ms budget) and
  // the one left unanswered for 300 ms makes the limiter drop the connection.
  int fallbacks_seen = 0;
  bool reset_seen = false;
  const auto until = Clock::now() + 5s;
  while (Clock::now() < until && !reset_seen) {
    auto answer = h.check(req("D", 0.001, 1000), 5000ms);
    ASSERT_TRUE(answer.has_value()) << "check not answered while Redis sleeps";
    fallbacks_seen += !answer->has_value();
    reset_seen = !h.limiter->connected();
  }
  sleeper.join();
  EXPECT_TRUE(reset_seen) << "the hung connection was not reset";
  EXPECT_GT(fallbacks_seen, 0);

  ASSERT_TRUE(h.wait_connected());
  bool recovered = h.wait_until(
      [&] {
        auto answer = h.check(req("D", 0.001, 1000), 5000ms);
        return answer && answer->has_value();
      },
      15000ms);
  EXPECT_TRUE(recovered);
  EXPECT_GE(h.limiter->reconnects(), 1u) << "the hung connection was not reset";
}

TEST_F(RedisLimiterTest, PendingChecksAreBounded) {
  RedisProcess redis(free_port());
  ASSERT_TRUE(redis.start());
  RedisOptions options = test_options(redis.port());
  options.budget = 60000ms;  // no deadline inside this test
  options.connect_timeout = 60000ms;
  options.max_pending = 3;
  Harness h(options);
  ASSERT_TRUE(h.wait_connected());

  redis.pause();
  auto state = std::make_shared<std::pair<std::mutex, std::vector<Answer>>>();
  h.run([&] {
    for (int i = 0; i < 10; ++i) {
      h.limiter->check(req("P", 0.001, 1000), [state](Answer a) {
        std::lock_guard lock(state->first);
        state->second.push_back(a);
      });
    }
  });
  auto count = [&] {
    std::lock_guard lock(state->first);
    return state->second.size();
  };
  // The seven over the bound answer nullopt without waiting for Redis.
  ASSERT_TRUE(h.wait_until([&] { return count() == 7; }, 5000ms));
  {
    std::lock_guard lock(state->first);
    for (const auto& a : state->second) EXPECT_FALSE(a.has_value());
  }
  redis.resume();
  ASSERT_TRUE(h.wait_until([&] { return count() == 10; }, 10000ms));
  std::lock_guard lock(state->first);
  for (std::size_t i = 7; i < 10; ++i) {
    ASSERT_TRUE(state->second[i].has_value());
    EXPECT_TRUE(state->second[i]->allowed);
  }
}

TEST_F(RedisLimiterTest, StopAndDestroyAnswerPendingChecks) {
  RedisProcess redis(free_port());
  ASSERT_TRUE(redis.start());
  RedisOptions options = test_options(redis.port());
  options.budget = 60000ms;
  options.connect_timeout = 60000ms;
  Harness h(options);
  ASSERT_TRUE(h.wait_connected());
  redis.pause();

  // stop(): the three in flight answer nullopt; a check after stop() too.
  std::promise<int> stopped_answers;
  auto counter = std::make_shared<std::atomic<int>>(0);
  auto nullopts = std::make_shared<std::atomic<int>>(0);
  h.run([&] {
    for (int i = 0; i < 3; ++i) {
      h.limiter->check(req("Z", 1, 5), [counter, nullopts](Answer a) {
        ++*counter;
        if (!a) ++*nullopts;
      });
    }
    h.limiter->stop();
    h.limiter->check(req("Z", 1, 5), [counter, nullopts](Answer a) {
      ++*counter;
      if (!a) ++*nullopts;
    });
  });
  ASSERT_TRUE(h.wait_until([&] { return counter->load() == 4; }, 5000ms));
  EXPECT_EQ(nullopts->load(), 4);
  EXPECT_FALSE(h.limiter->connected());

  // Destroying a connected limiter with checks in flight (no stop()) answers them as well.
  auto second = std::make_shared<Harness>(options);
  redis.resume();
  ASSERT_TRUE(second->wait_connected());
  redis.pause();
  auto destroyed_answers = std::make_shared<std::atomic<int>>(0);
  second->run([&] {
    for (int i = 0; i < 3; ++i) {
      second->limiter->check(req("Z", 1, 5), [destroyed_answers](Answer a) {
        if (!a) ++*destroyed_answers;
      });
    }
    second->limiter.reset();  // on the io thread: the destructor frees the hiredis context
  });
  EXPECT_TRUE(second->wait_until([&] { return destroyed_answers->load() == 3; }, 5000ms));
  second.reset();
  redis.resume();
}

}  // namespace
