// `saelab train`: parses options, runs train/run.h's run_training (a run config, the embedded toy
// run, a sweep, or --resume) and prints the end-of-run summary, the sweep's table, or one JSON
// object. Exit codes: 0 when the run completed, 130 / 143 when SIGINT / SIGTERM stopped it after
// writing a checkpoint, 1 on an error.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "saelab/cli/command.h"
#include "saelab/dist/local_launch.h"
#include "saelab/train/run.h"

namespace saelab::cli {
namespace {

struct Args {
  TrainRequest request;
  bool json_out = false;
  bool no_report = false;
  int nproc = 0;
};

void print_report(const TrainOutcome& out, std::FILE* msg) {
  if (!out.report_path.empty()) std::fprintf(msg, "report: %s\n", out.report_path.c_str());
  if (!out.report_error.empty())
    std::fprintf(stderr, "saelab: warning: no report written: %s\n", out.report_error.c_str());
}

std::string num(const json& e, const char* key) {
  if (!e.contains(key) || !e[key].is_number()) return "n/a";
  if (e[key].is_number_integer()) return std::to_string(e[key].get<int64_t>());
  return fmt::format("{:.4f}", e[key].get<double>());
}

void print_table(const SweepSpec& spec, const SweepResult& r, std::FILE* out) {
  bool toy = false, ce = false;
  size_t w = 6;
  for (size_t i = 0; i < r.members.size(); ++i) {
    toy |= r.members[i].eval.contains("metrics/mmcs");
    ce |= r.members[i].eval.contains("model_performance_preservation/ce_loss_score");
    w = std::max(w, spec.members[i].name.size());
  }
  std::string head = fmt::format("{:<{}}  {:>9}  {:>8}  {:>6}  {:>6}", "member", w, "expl.var",
                                 "L0", "dead", "dense");
  if (toy) head += fmt::format("  {:>7}  {:>9}", "MMCS", "recovered");
  if (ce) head += fmt::format("  {:>8}", "CE score");
  std::fprintf(out, "\nsweep of %zu SAEs, %.1f s (measured on held-out tokens)\n%s\n",
               r.members.size(), r.seconds, head.c_str());
  for (size_t i = 0; i < r.members.size(); ++i) {
    const json& e = r.members[i].eval;
    std::string line;
    if (!r.errors[i].empty()) {
      line = fmt::format("{:<{}}  failed: {}", spec.members[i].name, w, r.errors[i]);
    } else {
      line = fmt::format("{:<{}}  {:>9}  {:>8}  {:>6}  {:>6}", spec.members[i].name, w,
                         num(e, "metrics/explained_variance"), num(e, "metrics/l0"),
                         num(e, "sparsity/dead_features"), num(e, "sparsity/dense_features"));
      if (toy)
        line += fmt::format("  {:>7}  {:>9}", num(e, "metrics/mmcs"),
                            num(e, "metrics/features_recovered"));
      if (ce)
        line += fmt::format("  {:>8}", num(e, "model_performance_preservation/ce_loss_score"));
    }
    std::fprintf(out, "%s\n", line.c_str());
  }
  std::fprintf(out,
               "files:\n  sweep        %s/sweep.json\n  members      %s/<member>/ (config.toml, "
               "metrics.jsonl, final/)\n",
               r.run_dir.c_str(), r.run_dir.c_str());
}

void print_summary(const TrainSummary& s, std::FILE* out) {
  const json& e = s.eval;
  auto num = [&](const char* key) -> std::string {
    if (!e.contains(key) || !e[key].is_number()) return "n/a";
    if (e[key].is_number_integer()) return std::to_string(e[key].get<int64_t>());
    return fmt::format("{:.4f}", e[key].get<double>());
  };
  std::fprintf(out, "\n%s SAE, %lld steps, %lld tokens, %.1f s\n", s.architecture.c_str(),
               static_cast<long long>(s.steps), static_cast<long long>(s.n_training_tokens),
               s.seconds);
  std::fprintf(out, "  explained variance  %s\n", num("metrics/explained_variance").c_str());
  std::fprintf(out, "  L0                  %s\n", num("metrics/l0").c_str());
  std::fprintf(out, "  dead latents        %s\n", num("sparsity/dead_features").c_str());
  std::fprintf(out, "  dense latents       %s   (firing on > 1%% of tokens)\n",
               num("sparsity/dense_features").c_str());
  if (e.contains("model_performance_preservation/ce_loss_score")) {
    std::fprintf(out, "  CE loss score       %s   (1 = the SAE loses nothing; model evals)\n",
                 num("model_performance_preservation/ce_loss_score").c_str());
    std::fprintf(out, "  CE loss             %s clean, %s with SAE, %s ablated\n",
                 num("model_performance_preservation/ce_loss_without_sae").c_str(),
                 num("model_performance_preservation/ce_loss_with_sae").c_str(),
                 num("model_performance_preservation/ce_loss_with_ablation").c_str());
  }
  if (e.contains("metrics/mmcs")) {
    std::fprintf(out, "  MMCS                %s   (mean max cosine of the true features)\n",
                 num("metrics/mmcs").c_str());
    std::fprintf(out, "  features recovered  %s   (fraction with cosine > 0.9)\n",
                 num("metrics/features_recovered").c_str());
  }
  if (e.contains("n_eval_tokens"))
    std::fprintf(out, "  (measured on %s held-out tokens)\n", num("n_eval_tokens").c_str());
  if (s.loop_steps > 0 && s.loop_seconds > 0)
    std::fprintf(out,
                 "speed: %.0f tokens/s over %lld steps; %.0f%% in the SAE step, %.0f%% waiting "
                 "for activations\n",
                 double(s.loop_steps) * double(s.n_training_tokens) /
                     double(std::max<int64_t>(s.steps, 1)) / s.loop_seconds,
                 static_cast<long long>(s.loop_steps), 100.0 * s.step_seconds / s.loop_seconds,
                 100.0 * s.source_wait_seconds / s.loop_seconds);
  std::fprintf(
      out,
      "files:\n  final SAE    %s/\n  config       %s/config.toml\n  metrics      %s/metrics.jsonl\n"
      "  TensorBoard  %s/events.out.tfevents.*\n",
      s.final_dir.c_str(), s.run_dir.c_str(), s.run_dir.c_str(), s.run_dir.c_str());
  if (!s.last_checkpoint.empty())
    std::fprintf(out, "  checkpoint   %s/\n", s.last_checkpoint.c_str());
}

int run_train(Args a) {
  if (a.nproc > 0) return launch_local_ranks(a.nproc);
  a.request.quiet = a.json_out;
  a.request.messages = a.json_out ? stderr : stdout;
  a.request.write_report = !a.no_report;
  std::FILE* msg = a.request.messages;
  const TrainOutcome out = run_training(a.request);
  if (!out.speaks) return out.exit_code;  // a rank other than 0 of a distributed run
  if (out.is_sweep) {
    const SweepResult& r = out.sweep;
    if (a.json_out) {
      json j = r.to_json(out.spec);
      j["run_dir"] = out.run_dir;
      std::cout << j.dump() << std::endl;
    } else if (r.stop_signal == 0) {
      print_table(out.spec, r, stdout);
    }
    for (size_t i = 0; i < r.errors.size(); ++i)
      if (!r.errors[i].empty())
        std::fprintf(stderr, "saelab: error: sweep member %s: %s\n",
                     out.spec.members[i].name.c_str(), r.errors[i].c_str());
    if (r.stop_signal != 0)
      std::fprintf(msg,
                   "stopped by signal %d; every member wrote a checkpoint; continue with: "
                   "saelab train --resume %s\n",
                   r.stop_signal, out.run_dir.c_str());
    print_report(out, msg);
    return out.exit_code;
  }
  const TrainSummary& s = out.summary;
  if (a.json_out)
    std::cout << s.to_json().dump() << std::endl;
  else if (s.completed)
    print_summary(s, stdout);
  if (!s.completed)
    std::fprintf(msg,
                 "stopped by signal %d at step %lld; checkpoint %s; continue with: saelab train "
                 "--resume %s\n",
                 s.stop_signal, static_cast<long long>(s.steps), s.last_checkpoint.c_str(),
                 out.run_dir.c_str());
  print_report(out, msg);
  return out.exit_code;
}

auto setup = [](CLI::App* sub) -> std::function<int()> {
  auto a = std::make_shared<Args>();
  sub->add_option("config", a->request.config,
                  "Run config (.toml or .json, SAELens field names); default: the embedded toy run "
                  "(configs/toy.toml)");
  sub->add_option("--set", a->request.sets,
                  "Override a config key: --set architecture=topk --set lr=1e-3")
      ->take_all()
      ->allow_extra_args(false);
  sub->add_option("--run-dir", a->request.run_dir,
                  "Write the run here instead of <checkpoint_path>/<run_name>");
  sub->add_option("--resume", a->request.resume,
                  "Continue the run in RUN_DIR from its latest checkpoint");
  sub->add_flag("--json", a->json_out,
                "Print the end-of-run summary as one JSON object (progress goes to stderr)");
  sub->add_flag("--no-report", a->no_report,
                "Do not write RUN_DIR/report.html (saelab report writes it later)");
  sub->add_option("--nproc", a->nproc,
                  "Train data parallel on N local ranks (as torchrun --nproc_per_node N would)")
      ->check(CLI::PositiveNumber);
  sub->footer(R"(Examples:
  saelab train                                   # the embedded toy run (configs/toy.toml)
  saelab train --set architecture=topk --json    # the toy run with a TopK SAE
  saelab train my_run.toml --set lr=1e-4 --run-dir runs/a
  saelab train --resume runs/a                   # continue after Ctrl-C / SIGTERM
  saelab train --set l1_coefficient=[0.5,1,2,4]  # a sweep: 4 SAEs on one activation stream
  saelab train my_run.toml --nproc 2             # data parallel over 2 local ranks (Gloo)
  torchrun --nproc_per_node 2 --no-python saelab train my_run.toml
Exit codes: 0 done; 130 / 143 stopped by SIGINT / SIGTERM after writing a checkpoint; 1 error.)");
  return [a] { return run_train(*a); };
};

}  // namespace
SAELAB_COMMAND("train", "Train an SAE (default: the embedded toy run)", setup);
}  // namespace saelab::cli
