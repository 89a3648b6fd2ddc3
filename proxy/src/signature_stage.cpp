#include "crawlgate/proxy/signature_stage.h"

namespace crawlgate::proxy {

StageVerdict SignatureStage::evaluate(const RequestView& request, RequestContext& context,
                                      const ResumeFn&) {
  // Hyperscan scratch is per thread; it re-clones itself when a reload brings a new RuleSet.
  thread_local MatchScratch scratch;
  Decision decision = rules_->evaluate(request, scratch);
  if (decision.shadow_rule_index != Decision::kNoRule) {
    context.shadow_rule = std::string(rules_->rule(decision.shadow_rule_index).rule_name);
    context.shadow_rule_index = decision.shadow_rule_index;
  }
  if (!decision.matched()) return StageVerdict::kContinue;
  context.traffic_class = std::string(decision.class_name);
  context.rule = std::string(decision.rule_name);
  context.rule_index = decision.rule_index;
  context.action = std::string(action_name(decision.action));
  context.enforced = decision.enforced;
  if (decision.action != Action::kDeny || !decision.enforced) return StageVerdict::kContinue;
  // robots.txt stays reachable for every class: a crawler that reads it may obey it.
  if (request.path() == "/robots.txt") return StageVerdict::kContinue;
  context.response = denial_response(decision.deny_status, decision.deny_body,
                                     decision.class_name, context.request_id);
  return StageVerdict::kRespond;
}

LocalResponse denial_response(int status, std::string_view deny_body, std::string_view class_name,
                              std::string_view request_id) {
  LocalResponse response;
  response.status = status;
  response.body.reserve(deny_body.size() + 200);
  response.body.append(std::to_string(status)).append(" ").append(reason_phrase(status));
  response.body.append("\n\n").append(deny_body);
  if (!deny_body.empty() && deny_body.back() != '\n') response.body.push_back('\n');
  response.body.append("\nclient class: ").append(class_name.empty() ? "-" : class_name);
  response.body.append("\nrequest id: ").append(request_id);
  response.body.append("\n-- crawlgate\n");
  return response;
}

}  // namespace crawlgate::proxy
