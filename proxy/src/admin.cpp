// The admin listener: /healthz, /readyz, /metrics and POST /-/reload. Never on the public port.
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <nlohmann/json.hpp>

#include <cmath>

#include "server_impl.h"

namespace crawlgate::proxy {

namespace beast = boost::beast;
namespace http = beast::http;
using error_code = boost::system::error_code;

namespace {

class AdminSession : public std::enable_shared_from_this<AdminSession> {
 public:
  AdminSession(Server::Impl& server, tcp::socket socket)
      : server_(server), stream_(std::move(socket)) {}

  void start() {
    parser_.emplace();
    parser_->header_limit(8 * 1024);
    parser_->body_limit(4 * 1024);
    stream_.expires_after(std::chrono::seconds(10));
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&AdminSession::on_read, shared_from_this()));
  }

 private:
  void on_read(error_code ec, std::size_t) {
    if (ec) return;
    const auto& req = parser_->get();
    std::string_view target = req.target();
    if (target == "/healthz") return reply(http::status::ok, "ok\n");
    if (target == "/readyz") {
      if (server_.draining.load()) return reply(http::status::service_unavailable, "draining\n");
      auto snapshot = server_.load_snapshot();
      return reply(http::status::ok, "ready: config generation " +
                                         std::to_string(snapshot->generation) + "\n");
    }
    if (target == "/metrics") {
      if (!server_.metrics) return reply(http::status::not_found, "metrics are not enabled\n");
      return reply(http::status::ok, server_.metrics->render(),
                   "text/plain; version=0.0.4; charset=utf-8");
    }
    if (target.starts_with("/clients/")) {
      auto address = IpAddress::parse(target.substr(9));
      if (!address) return reply(http::status::bad_request, "not an IP address\n");
      // Targets and ids are client bytes: replace what is not UTF-8 rather than fail.
      return reply(http::status::ok,
                   describe_client(*address).dump(2, ' ', false,
                                                  nlohmann::json::error_handler_t::replace) +
                       "\n",
                   "application/json");
    }
    if (target == "/-/reload") {
      if (req.method() != http::verb::post) {
        return reply(http::status::method_not_allowed, "use POST\n");
      }
      // Compiling a config can take a while: do it on the control thread, answer when done.
      auto self = shared_from_this();
      server_.request_reload([self](bool ok, std::string message) {
        net::post(self->stream_.get_executor(), [self, ok, message = std::move(message)] {
          self->reply(ok ? http::status::ok : http::status::unprocessable_entity,
                      (ok ? "reloaded: " : "reload failed, old config kept: ") + message + "\n");
        });
      });
      return;
    }
    reply(http::status::not_found, "not found\n");
  }

  // "Why was I blocked?": the client's limit state and its last decisions with request ids.
  nlohmann::json describe_client(const IpAddress& address) const {
    nlohmann::json out;
    out["ip"] = address.to_string();
    std::vector<DecisionLog::Entry> decisions;
    for (const auto& worker : server_.workers) worker->decisions.find(address, 200, decisions);
    std::sort(decisions.begin(), decisions.end(),
              [](const auto& a, const auto& b) { return a.ts > b.ts; });
    out["class"] = nullptr;
    for (const auto& decision : decisions) {
      if (decision.traffic_class[0]) {
        out["class"] = decision.traffic_class;
        break;
      }
    }
    // The behavioural score and its top features come with the classifier.
    out["score"] = nullptr;
    nlohmann::json limits = nlohmann::json::array();
    if (server_.throttle) {
      Nanos now = server_.throttle->clock().now();
      for (const auto& [id, info] : server_.throttle->limits()) {
        ClientKey key = ClientKey::make(address, info.ipv4_prefix, info.ipv6_prefix, id);
        auto entry = server_.throttle->clients().find(key);
        if (!entry) continue;
        double interval = 1e9 / info.limit.rate_per_second;
        double tau = info.limit.burst * interval;
        double backlog = std::max<double>(0, static_cast<double>(entry->limit.tat - now));
        nlohmann::json limit;
        limit["limit"] = info.name;
        limit["key"] = key.block().to_string();
        limit["rate_per_second"] = info.limit.rate_per_second;
        limit["burst"] = info.limit.burst;
        limit["remaining"] = std::max(0.0, std::floor((tau - backlog) / interval));
        limit["next_allowed_in_seconds"] = std::max(0.0, backlog + interval - tau) / 1e9;
        limit["full_in_seconds"] = backlog / 1e9;
        limit["last_seen_seconds_ago"] =
            entry->last_seen ? static_cast<double>(now - entry->last_seen) / 1e9 : 0.0;
        limits.push_back(std::move(limit));
      }
    }
    out["limits"] = std::move(limits);
    auto to_json = [](const DecisionLog::Entry& decision) {
      return nlohmann::json{{"ts", decision.ts},
                            {"request_id", decision.request_id},
                            {"method", decision.method},
                            {"target", decision.target},
                            {"status", decision.status},
                            {"class", decision.traffic_class},
                            {"rule", decision.rule},
                            {"action", decision.action},
                            {"enforced", decision.enforced}};
    };
    // The newest 20 decisions, and separately the newest 20 refusals, which a burst of allowed
    // requests would otherwise push out of view.
    nlohmann::json recent = nlohmann::json::array();
    nlohmann::json refusals = nlohmann::json::array();
    for (const auto& decision : decisions) {
      if (recent.size() < 20) recent.push_back(to_json(decision));
      std::string_view action = decision.action;
      bool refused = action == "deny" || action == "throttled" || action == "tarpit" ||
                     action == "error";
      if (refused && decision.enforced && refusals.size() < 20) {
        refusals.push_back(to_json(decision));
      }
    }
    out["recent_decisions"] = std::move(recent);
    out["recent_refusals"] = std::move(refusals);
    return out;
  }

  void reply(http::status status, std::string body,
             std::string_view content_type = "text/plain; charset=utf-8") {
    auto& res = response_.emplace(status, 11);
    res.set(http::field::server, "crawlgate");
    res.set(http::field::content_type, content_type);
    res.body() = std::move(body);
    res.prepare_payload();
    res.keep_alive(false);
    stream_.expires_after(std::chrono::seconds(10));
    http::async_write(stream_, res, [self = shared_from_this()](error_code, std::size_t) {
      error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    });
  }

  Server::Impl& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> response_;
};

}  // namespace

void start_admin_session(Server::Impl& server, tcp::socket socket) {
  std::make_shared<AdminSession>(server, std::move(socket))->start();
}

void Server::Impl::do_accept_admin() {
  admin_acceptor->async_accept(workers[0]->ioc, [this](error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == net::error::operation_aborted || !admin_acceptor->is_open()) return;
      return do_accept_admin();
    }
    start_admin_session(*this, std::move(socket));
    do_accept_admin();
  });
}

}  // namespace crawlgate::proxy
