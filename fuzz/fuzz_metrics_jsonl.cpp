// metrics.jsonl as doctor and report read it (read_metrics_jsonl).
#include "fuzz_target.h"
#include "saelab/log/metrics_jsonl.h"

SAELAB_FUZZ_TARGET(metrics_jsonl) {
  std::vector<std::string> errors;
  auto series =
      saelab::read_metrics_jsonl(saelab::fuzz::write_input(data, size, "metrics.jsonl"), &errors);
  size_t points = 0;
  for (const auto& [name, pts] : series) points += pts.size();
  (void)points;
}
