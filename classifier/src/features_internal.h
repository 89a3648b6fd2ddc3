// Internal to the classifier library: the state update shared by BehaviourTable and its tests.
#pragma once

#include <cstdint>
#include <string_view>

#include "crawlgate/classifier/features.h"

namespace crawlgate {

// A fixed-seed 64-bit hash of a byte string (feature sets must not depend on process seeds, so
// offline extraction and the proxy agree).
uint64_t hash_bytes(std::string_view s);

namespace behaviour {

enum Share : std::size_t {
  kHtml, kAsset, kReferer, kRefererKnown, kCookie, kNewPath, kDeep, k404, kMissing, kOrder,
  kHttp10, kHeadless, kUaChange
};
static_assert(kUaChange + 1 == BehaviourState::kShares);

// Folds one request into a state (client or block). address_hash: the full client address's hash
// (block entries count distinct addresses with it).
void apply(BehaviourState& s, const RequestTraits& t, Nanos now, uint64_t address_hash, bool block);
void apply_status(BehaviourState& s, int status);
void fill(FeatureVector& v, const BehaviourState& client, const BehaviourState& block,
          const RequestTraits& t);

}  // namespace behaviour
}  // namespace crawlgate
