// The signature stage: one RuleSet evaluation per request (one Hyperscan scan per field, one
// prefix-tree walk), recording class, rule and action; an enforced deny answers here.
#pragma once

#include <memory>

#include "crawlgate/proxy/pipeline.h"
#include "crawlgate/rules/rule_set.h"

namespace crawlgate::proxy {

class SignatureStage final : public Stage {
 public:
  explicit SignatureStage(std::shared_ptr<const RuleSet> rules) : rules_(std::move(rules)) {}
  std::string_view name() const override { return "signatures"; }
  StageVerdict evaluate(const RequestView& request, RequestContext& context,
                        const ResumeFn& resume) override;

 private:
  std::shared_ptr<const RuleSet> rules_;
};

// The page a denied client gets: status, the class, the request id; nothing about the rule.
LocalResponse denial_response(int status, std::string_view deny_body, std::string_view class_name,
                              std::string_view request_id);

}  // namespace crawlgate::proxy
