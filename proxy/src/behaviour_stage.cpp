#include "crawlgate/proxy/behaviour_stage.h"

#include "crawlgate/proxy/signature_stage.h"

namespace crawlgate::proxy {
namespace {
// IPv4 is held v4-mapped, so kLoopbackV4 is also ::ffff:127.0.0.1.
const IpAddress kLoopbackV4 = IpAddress::v4(0x7f000001u);
const IpAddress kLoopbackV6 = IpAddress::v6({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
}  // namespace

BehaviourStage::BehaviourStage(const Config& config, std::shared_ptr<const Model> model,
                               BehaviourTable& table, const Clock& clock)
    : model_(std::move(model)), table_(table), clock_(clock), enforce_(config.behaviour.enforce) {
  for (const BehaviourThreshold& threshold : config.behaviour.thresholds) {
    const ClassConfig* cls = config.find_class(threshold.class_name);
    thresholds_.push_back(Threshold{threshold.min_score, threshold.class_name,
                                    cls ? cls->action : Action::kAllow,
                                    cls ? cls->deny : DenyResponse{}});
  }
  // Any UA can claim to be Googlebot or an archiver: such a claim is allowed, not exempt.
  claim_only_rules_.resize(config.rules.size());
  for (std::size_t i = 0; i < config.rules.size(); ++i) {
    const std::string& cls = config.rules[i].class_name;
    claim_only_rules_[i] = config.behaviour.score_claimed_bots &&
                           (cls == "search_engine" || cls == "archiver");
  }
}

StageVerdict BehaviourStage::evaluate(const RequestView& request, RequestContext& context,
                                      const ResumeFn&) {
  bool decided = context.rule_index < claim_only_rules_.size() &&
                 !claim_only_rules_[context.rule_index];
  // A client a decisive rule classified costs no feature work: its class is known.
  if (decided) return StageVerdict::kContinue;
  // 127.0.0.1 and ::1 are this machine: most often a TLS terminator missing from
  // trusted_proxies, behind which every visitor would be one client, throttled as a crawler.
  // No visitor from outside can have these addresses, so sparing them spares no crawler.
  if (request.client_ip == kLoopbackV4 || request.client_ip == kLoopbackV6) {
    return StageVerdict::kContinue;
  }
  FeatureVector features = table_.update(request, -1, clock_.now());
  double score = model_->score(features);
  context.score = score;
  const Threshold* reached = nullptr;
  for (const Threshold& threshold : thresholds_) {
    if (score >= threshold.min_score) {
      reached = &threshold;
      break;
    }
  }
  // Attribution costs one more walk of the trees: only for flagged clients or on demand.
  if (reached || context.explain) context.top_features = model_->top_features(features);
  if (!reached) return StageVerdict::kContinue;
  context.traffic_class = reached->class_name;
  context.rule = "behaviour";
  context.rule_index = UINT32_MAX;
  context.action = std::string(action_name(reached->action));
  context.enforced = enforce_;
  if (reached->action == Action::kDeny && enforce_ && request.path() != "/robots.txt") {
    context.response = denial_response(reached->deny.status, reached->deny.body,
                                       reached->class_name, context.request_id);
    return StageVerdict::kRespond;
  }
  return StageVerdict::kContinue;
}

}  // namespace crawlgate::proxy
