// `saelab doctor RUN_DIR [--json]`: reads a training run's config and metrics and names what went
// wrong (eval/doctor.h), with the figures behind each finding and the config change to try.
#include <iostream>
#include <optional>

#include "saelab/cli/command.h"
#include "saelab/core/error.h"
#include "saelab/eval/doctor.h"

namespace saelab::cli {
namespace {

struct DoctorOptions {
  std::string run_dir;
  bool json = false;
  double reference_ce_loss = -1;
  std::string baseline;
  int64_t d_vocab = 0;
};

int run(const DoctorOptions& o) {
  DoctorInputs in = read_doctor_inputs(o.run_dir);
  if (o.reference_ce_loss >= 0) {
    if (!(o.reference_ce_loss > 0))
      fail("--reference-ce-loss: expected a positive loss, got {}", o.reference_ce_loss);
    in.reference_ce_loss = o.reference_ce_loss;
  }
  if (!o.baseline.empty()) {
    if (in.reference_ce_loss)
      fail("--baseline and --reference-ce-loss: give one reference, not both");
    in.reference_ce_loss = baseline_ce_loss(o.baseline);
  }
  if (o.d_vocab != 0) {
    if (o.d_vocab < 2) fail("--d-vocab: expected a vocabulary size >= 2, got {}", o.d_vocab);
    in.d_vocab = o.d_vocab;
  }
  const auto findings = diagnose(in);
  if (o.json) {
    json j = findings_json(findings);
    j["run_dir"] = o.run_dir;
    j["healthy"] = findings.empty();
    j["figures"] = doctor_figures(in);
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "saelab doctor " << o.run_dir << "\n\n" << findings_text(findings);
  }
  return 0;
}

auto setup = [](CLI::App* sub) -> std::function<int()> {
  auto o = std::make_shared<DoctorOptions>();
  sub->add_option("run_dir", o->run_dir, "A training run directory (config.toml + metrics.jsonl)")
      ->required();
  sub->add_flag("--json", o->json,
                "Print {\"findings\": [...], \"figures\": {...}} as one JSON object");
  sub->add_option("--reference-ce-loss", o->reference_ce_loss,
                  "The model's CE loss on its own data; ce_loss_without_sae above 2x this is a "
                  "dataset mismatch");
  sub->add_option("--baseline", o->baseline,
                  "A run on the right data: its ce_loss_without_sae is the reference for this one");
  sub->add_option(
      "--d-vocab", o->d_vocab,
      "The model's vocabulary size, for the no-reference bound log(d_vocab)/2 (default 50257)");
  sub->footer(
      "Findings (docs/doctor.md): l1_too_small, too_wide, lr_too_low, too_narrow, dead_from_lr,\n"
      "dataset_mismatch, dense_latents. A healthy run has none. Exit code 0 either way; 1 when\n"
      "RUN_DIR is not a run.\n\n"
      "Examples:\n"
      "  saelab doctor checkpoints/toy                 # one block per finding\n"
      "  saelab doctor runs/a --json                   # {\"findings\": [{\"code\", \"message\", "
      "...}]}\n"
      "  saelab doctor runs/pile --baseline runs/tinystories   # compare the model's own loss");
  return [o] { return run(*o); };
};

}  // namespace
}  // namespace saelab::cli
SAELAB_COMMAND("doctor",
               "Diagnose a training run: name what went wrong and the config change to try",
               saelab::cli::setup);
