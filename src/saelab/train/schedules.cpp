// LR and coefficient schedules (formulas in schedules.h).
#include "saelab/train/schedules.h"

#include <algorithm>
#include <cmath>

#include "saelab/core/error.h"

namespace saelab {

void LrSchedule::validate() const {
  if (name != "constant" && name != "cosineannealing" && name != "cosineannealingwarmrestarts")
    fail(
        "lr_scheduler_name: expected constant | cosineannealing | cosineannealingwarmrestarts, got "
        "'{}'",
        name);
  if (warm_up_steps < 0 || decay_steps < 0 || warm_up_steps + decay_steps > steps)
    fail("lr_warm_up_steps + lr_decay_steps: expected at most the {} training steps, got {} + {}",
         steps, warm_up_steps, decay_steps);
  if (name == "cosineannealingwarmrestarts" &&
      (n_restart_cycles < 1 || (steps - warm_up_steps - decay_steps) / n_restart_cycles < 1))
    fail("n_restart_cycles: expected 1..{} (main-phase steps), got {}",
         steps - warm_up_steps - decay_steps, n_restart_cycles);
}

double LrSchedule::at(int64_t t) const {
  const double pi = 3.14159265358979323846;
  int64_t W = warm_up_steps, D = decay_steps;
  if (W > 0 && t < W) {
    if (W == 1) return lr;
    double start = 1.0 / W;
    return lr * (start + (1.0 - start) * static_cast<double>(t) / static_cast<double>(W - 1));
  }
  if (D > 0 && t >= steps - D) {
    double v = static_cast<double>(std::min(t - (steps - D), D));
    double start = name == "constant" ? lr : lr_end;
    return start * (1.0 - v / static_cast<double>(D));
  }
  int64_t u = t - W;
  int64_t M = steps - W - D;
  if (name == "cosineannealing") {
    if (M <= 0) return lr;
    return lr_end + (lr - lr_end) * (1.0 + std::cos(pi * static_cast<double>(u) / M)) / 2.0;
  }
  if (name == "cosineannealingwarmrestarts") {
    int64_t T0 = std::max<int64_t>(M / std::max<int64_t>(n_restart_cycles, 1), 1);
    return lr_end + (lr - lr_end) * (1.0 + std::cos(pi * static_cast<double>(u % T0) / T0)) / 2.0;
  }
  return lr;
}

double coefficient_at(double value, int64_t warm_up_steps, int64_t step) {
  if (warm_up_steps > 0 && step < warm_up_steps)
    return value * static_cast<double>(step + 1) / static_cast<double>(warm_up_steps);
  return value;
}

}  // namespace saelab
