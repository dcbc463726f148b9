// SIGINT/SIGTERM handling for training: the handler only records the signal; the trainer checks the
// flag at the end of each step, writes a checkpoint and returns, so a stopped run resumes exactly.
// A second signal of the same kind while the first is being handled restores the default action
// (so a stuck run can still be killed with a second Ctrl-C).
#pragma once
#include <atomic>

namespace saelab {

// Installs the handlers (idempotent) and returns the flag: 0, or the number of the first signal.
const std::atomic<int>& install_stop_signal_handlers();

}  // namespace saelab
