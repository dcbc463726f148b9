// BatchTopK over a global batch that data-parallel ranks hold in shares: the k·N largest
// activations of the whole batch survive, wherever they are. Each rank offers its own largest
// candidates (at most k·N: no rank can hold more of the global selection), every rank sees them
// all, and each keeps those at or above the global boundary value; ties at the boundary go to
// lower ranks first, so exactly k·N survive in total, as in one process.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace saelab {

class Collectives;

// How many of this rank's candidates (positive values, any order) belong to the `keep` largest of
// every rank's candidates together.
int64_t global_keep_count(const at::Tensor& candidates, int64_t keep, Collectives& c);

// The smallest of every rank's `local` (NaN where a rank has none; NaN when no rank has one).
double global_min(double local, Collectives& c);

}  // namespace saelab
