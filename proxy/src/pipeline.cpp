#include "crawlgate/proxy/pipeline.h"

#include "crawlgate/proxy/behaviour_stage.h"
#include "crawlgate/proxy/signature_stage.h"
#include "crawlgate/proxy/throttle_stage.h"

namespace crawlgate::proxy {

StaticResponseStage::StaticResponseStage(std::vector<StaticResponseSettings> responses)
    : responses_(std::move(responses)) {}

StageVerdict StaticResponseStage::evaluate(const RequestView& request, RequestContext& context,
                                           const ResumeFn&) {
  std::string_view path = request.path();
  for (const StaticResponseSettings& entry : responses_) {
    if (entry.path == path) {
      LocalResponse response;
      response.status = entry.status;
      response.content_type = entry.content_type;
      response.body = entry.body;
      context.response = std::move(response);
      context.action = "static";
      return StageVerdict::kRespond;
    }
  }
  return StageVerdict::kContinue;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

LocalResponse error_response(int status, std::string_view request_id, std::string_view detail,
                             bool close) {
  LocalResponse response;
  response.status = status;
  response.close = close;
  response.body.reserve(160 + detail.size());
  response.body.append(std::to_string(status)).append(" ").append(reason_phrase(status));
  response.body.append("\n\n").append(detail).append("\n\nrequest id: ").append(request_id);
  response.body.append("\n-- crawlgate\n");
  return response;
}

std::shared_ptr<const Snapshot> build_snapshot(const ServerSettings& settings,
                                               std::uint64_t generation, std::string source) {
  SnapshotParts parts;
  parts.settings = settings;
  parts.generation = generation;
  parts.source = std::move(source);
  return build_snapshot(std::move(parts));
}

std::shared_ptr<const Snapshot> build_snapshot(SnapshotParts parts, std::string* error) {
  const ServerSettings& settings = parts.settings;
  std::shared_ptr<const Config>& config = parts.config;
  std::shared_ptr<const RuleSet>& rules = parts.rules;
  metrics::Metrics* metrics = parts.metrics;
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->generation = parts.generation;
  snapshot->settings = settings;
  if (metrics) {
    std::vector<std::string> class_names;
    std::vector<std::pair<std::string, std::string>> rule_classes;
    if (config) {
      for (const ClassConfig& cls : config->classes) class_names.push_back(cls.name);
    }
    if (rules) {
      for (std::uint32_t i = 0; i < rules->rule_count(); ++i) {
        RuleMatch rule = rules->rule(i);
        rule_classes.emplace_back(std::string(rule.rule_name), std::string(rule.class_name));
      }
    }
    snapshot->labels = metrics->labels_for(class_names, rule_classes);
  }
  snapshot->config = config;
  snapshot->rules = rules;
  snapshot->source = std::move(parts.source);
  if (!settings.static_responses.empty()) {
    snapshot->pipeline.add(std::make_shared<StaticResponseStage>(settings.static_responses));
  }
  if (rules && rules->rule_count() > 0) {
    snapshot->pipeline.add(std::make_shared<SignatureStage>(rules));
  }
  if (config && parts.model && parts.throttle && config->behaviour.enabled) {
    BehaviourTable& table = parts.throttle->behaviour_table(config->behaviour.table_size);
    snapshot->model = parts.model;
    snapshot->behaviour = &table;
    snapshot->pipeline.add(std::make_shared<BehaviourStage>(*config, parts.model, table,
                                                            parts.throttle->clock()));
  }
  if (rules && rules->rule_count() > 0) {
    if (config && parts.throttle) {
      std::string stage_error;
      auto throttle = ThrottleStage::create(*config, *rules, parts.throttle, &stage_error);
      if (!stage_error.empty()) {
        if (error) *error = stage_error;
        return nullptr;
      }
      if (throttle) snapshot->pipeline.add(std::move(throttle));
    }
  }
  return snapshot;
}

StageVerdict run_pipeline_offline(const Snapshot& snapshot, const RequestView& request,
                                  RequestContext& context) {
  const ResumeFn ignore_resume = [](StageVerdict) {};
  for (std::size_t i = 0; i < snapshot.pipeline.size(); ++i) {
    Stage& stage = snapshot.pipeline.at(i);
    StageVerdict verdict = stage.evaluate(request, context, ignore_resume);
    if (verdict == StageVerdict::kRespond) {
      context.answered_by = std::string(stage.name());
      return verdict;
    }
  }
  return StageVerdict::kContinue;
}

}  // namespace crawlgate::proxy
