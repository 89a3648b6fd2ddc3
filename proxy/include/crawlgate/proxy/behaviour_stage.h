// The behavioural stage: decisive rules decide first; clients no rule classified (browser-like or
// unknown UAs) and clients that merely claim to be a search engine or archiver are scored by the
// in-process model over their features (docs/model.md), and a score over a threshold gives them
// that threshold's class, whose action and limits then apply. Boost-free.
#pragma once

#include <memory>
#include <vector>

#include "crawlgate/classifier/features.h"
#include "crawlgate/classifier/model.h"
#include "crawlgate/proxy/pipeline.h"

namespace crawlgate::proxy {

class BehaviourStage final : public Stage {
 public:
  BehaviourStage(const Config& config, std::shared_ptr<const Model> model, BehaviourTable& table,
                 const Clock& clock);
  std::string_view name() const override { return "behaviour"; }
  StageVerdict evaluate(const RequestView& request, RequestContext& context,
                        const ResumeFn& resume) override;

 private:
  struct Threshold {
    double min_score;
    std::string class_name;
    Action action;
    DenyResponse deny;
  };
  std::shared_ptr<const Model> model_;
  BehaviourTable& table_;
  const Clock& clock_;
  std::vector<Threshold> thresholds_;
  std::vector<bool> claim_only_rules_;  // rules whose class a client can merely claim
  bool enforce_ = true;
};

}  // namespace crawlgate::proxy
