// Learning-rate and coefficient schedules as closed forms of the step index, equal to what
// SAELens's get_lr_scheduler builds from torch schedulers (SequentialLR of LinearLR warm-up, the
// main scheduler, LinearLR decay) — closed forms so that a resumed run needs only the step.
//   warm-up (t < W):        lr · (1/W + (1 − 1/W) · t/(W − 1))        (lr/W → lr)
//   main (u = t − W, M = steps − W − D):
//     constant              lr
//     cosineannealing       lr_end + (lr − lr_end)(1 + cos(π u / M)) / 2
//     cosineannealingwarmrestarts  the same with u mod T0, T0 = M / n_restart_cycles (integer)
//   decay (the last D steps, v = t − (steps − D)): start · (1 − v/D), start = lr for constant,
//                            lr_end otherwise (SAELens decays from where the main phase ended)
// Coefficient warm-up (l1, l0): λ_t = λ · (t + 1)/W for t < W, then λ.
#pragma once
#include <cstdint>
#include <string>

namespace saelab {

struct LrSchedule {
  std::string name = "constant";  // constant | cosineannealing | cosineannealingwarmrestarts
  double lr = 3e-4;
  int64_t steps = 1;
  int64_t warm_up_steps = 0;
  int64_t decay_steps = 0;
  double lr_end = 3e-5;
  int64_t n_restart_cycles = 1;

  // Throws saelab::Error for an unknown name or phases longer than training.
  void validate() const;
  double at(int64_t step) const;
};

double coefficient_at(double value, int64_t warm_up_steps, int64_t step);

}  // namespace saelab
