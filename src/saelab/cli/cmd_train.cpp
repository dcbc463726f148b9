// `saelab train`: trains an SAE from a run config (SAELens's field names), or the embedded default
// toy run when no config is given; resumes a stopped run with --resume. Exit codes: 0 when the run
// completed, 130 / 143 when SIGINT / SIGTERM stopped it after writing a checkpoint, 1 on an error.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>

#include "saelab/cli/command.h"
#include "saelab/cli/train_sweep.h"
#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/train/checkpoint.h"
#include "saelab/train/config.h"
#include "saelab/train/default_config.h"
#include "saelab/train/sources.h"
#include "saelab/train/stop_signal.h"
#include "saelab/train/trainer.h"

namespace {
namespace fs = std::filesystem;
using saelab::json;

struct Args {
  std::string config;
  std::vector<std::string> sets;
  std::string run_dir;
  std::string resume;
  bool json_out = false;
};

saelab::RunnerConfig load_config(const Args& a) {
  if (!a.resume.empty()) {
    if (!a.config.empty()) saelab::fail("train: give either CONFIG or --resume RUN_DIR, not both");
    std::string path = a.resume + "/config.toml";
    if (!saelab::path_exists(path))
      saelab::fail("{}: expected the config.toml of a saelab run directory (--resume)", path);
    return saelab::load_runner_config(path, a.sets);
  }
  if (!a.config.empty()) return saelab::load_runner_config(a.config, a.sets);
  return saelab::load_runner_config_text(saelab::default_toy_config_toml(),
                                         "configs/toy.toml (embedded)", a.sets);
}

// <checkpoint_path>/<run name>, with _2, _3, ... appended when that folder already holds a run.
std::string choose_run_dir(const saelab::RunnerConfig& cfg, const Args& a) {
  if (!a.resume.empty()) return a.resume;
  if (!a.run_dir.empty()) {
    if (saelab::path_exists(a.run_dir + "/config.toml"))
      saelab::fail(
          "{}: already holds a run; continue it with --resume {} or pick another --run-dir",
          a.run_dir, a.run_dir);
    return a.run_dir;
  }
  std::string base = cfg.checkpoint_path + "/" + cfg.resolved_run_name();
  std::string dir = base;
  for (int i = 2; saelab::path_exists(dir + "/config.toml"); ++i)
    dir = base + "_" + std::to_string(i);
  return dir;
}

void print_summary(const saelab::TrainSummary& s, std::FILE* out) {
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
  std::fprintf(
      out,
      "files:\n  final SAE    %s/\n  config       %s/config.toml\n  metrics      %s/metrics.jsonl\n"
      "  TensorBoard  %s/events.out.tfevents.*\n",
      s.final_dir.c_str(), s.run_dir.c_str(), s.run_dir.c_str(), s.run_dir.c_str());
  if (!s.last_checkpoint.empty())
    std::fprintf(out, "  checkpoint   %s/\n", s.last_checkpoint.c_str());
}

int train_in(const saelab::RunnerConfig& cfg, const std::string& run_dir, const Args& a) {
  auto source = saelab::make_activation_source(cfg);
  saelab::TrainerOptions opts;
  opts.run_dir = run_dir;
  opts.quiet = a.json_out;
  opts.stop_signal = &saelab::install_stop_signal_handlers();
  // A language model's activations: CE/KL evals every eval step and at the end, on that model.
  if (auto* store = dynamic_cast<saelab::ActivationsStore*>(source.get()))
    opts.model_eval = saelab::make_model_eval(cfg, *store);
  std::FILE* msg = a.json_out ? stderr : stdout;
  std::string describe = source->describe();
  saelab::Trainer trainer(cfg, std::move(source), opts);
  if (!a.resume.empty()) {
    // --set on a resumed run changes its config from here on; the run directory records it.
    if (!a.sets.empty()) saelab::write_file_atomic(run_dir + "/config.toml", saelab::to_toml(cfg));
    std::string ckpt = saelab::latest_checkpoint(run_dir);
    if (ckpt.empty()) {
      std::fprintf(msg, "no checkpoint in %s/checkpoints; starting the run from the beginning\n",
                   run_dir.c_str());
    } else {
      trainer.resume_from(ckpt);
      std::fprintf(msg, "resuming from %s (step %lld)\n", ckpt.c_str(),
                   static_cast<long long>(trainer.step()));
    }
  }
  std::fprintf(msg, "training a %s SAE (d_in=%lld, d_sae=%lld) on %s for %lld steps -> %s/\n",
               cfg.architecture.c_str(), static_cast<long long>(cfg.d_in),
               static_cast<long long>(cfg.resolved_d_sae()), describe.c_str(),
               static_cast<long long>(cfg.steps()), run_dir.c_str());
  std::fflush(msg);
  saelab::TrainSummary s = trainer.run();
  if (cfg.log_to_wandb)
    std::fprintf(msg, "wandb sync %s/ uploads the TensorBoard files to Weights & Biases\n",
                 run_dir.c_str());
  if (a.json_out) {
    std::cout << s.to_json().dump() << std::endl;
  } else if (s.completed) {
    print_summary(s, stdout);
  }
  if (!s.completed) {
    std::fprintf(msg,
                 "stopped by signal %d at step %lld; checkpoint %s; continue with: saelab train "
                 "--resume %s\n",
                 s.stop_signal, static_cast<long long>(s.steps), s.last_checkpoint.c_str(),
                 run_dir.c_str());
    return 128 + s.stop_signal;
  }
  return 0;
}

// A failed run leaves its error in RUN_DIR/error.txt, where `saelab doctor` finds it.
int run_train(const Args& a) {
  // A list of values for a key is a sweep (train/sweep.h): every combination on one stream.
  if (!a.resume.empty() && a.config.empty() && saelab::is_sweep_dir(a.resume))
    return saelab::cli::train_sweep(saelab::load_sweep_dir(a.resume, a.sets), a.resume, true,
                                    !a.sets.empty(), a.json_out);
  if (a.resume.empty()) {
    saelab::SweepSpec spec =
        a.config.empty() ? saelab::load_sweep_config_text(saelab::default_toy_config_toml(),
                                                          "configs/toy.toml (embedded)", a.sets)
                         : saelab::load_sweep_config(a.config, a.sets);
    if (spec.is_sweep())
      return saelab::cli::train_sweep(spec, saelab::cli::choose_sweep_dir(spec, a.run_dir), false,
                                      false, a.json_out);
  }
  saelab::RunnerConfig cfg = load_config(a);
  std::string run_dir = choose_run_dir(cfg, a);
  try {
    return train_in(cfg, run_dir, a);
  } catch (const saelab::Error& e) {
    try {
      saelab::make_dirs(run_dir);
      saelab::write_file_atomic(run_dir + "/error.txt", std::string(e.what()) + "\n");
    } catch (const saelab::Error&) {
      // The run directory itself is unwritable; the message still reaches the user below.
    }
    throw;
  }
}

auto setup = [](CLI::App* sub) -> std::function<int()> {
  auto a = std::make_shared<Args>();
  sub->add_option("config", a->config,
                  "Run config (.toml or .json, SAELens field names); default: the embedded toy run "
                  "(configs/toy.toml)");
  sub->add_option("--set", a->sets, "Override a config key: --set architecture=topk --set lr=1e-3")
      ->take_all()
      ->allow_extra_args(false);
  sub->add_option("--run-dir", a->run_dir,
                  "Write the run here instead of <checkpoint_path>/<run_name>");
  sub->add_option("--resume", a->resume, "Continue the run in RUN_DIR from its latest checkpoint");
  sub->add_flag("--json", a->json_out,
                "Print the end-of-run summary as one JSON object (progress goes to stderr)");
  sub->footer(
      "Examples:\n"
      "  saelab train                                   # the embedded toy run (configs/toy.toml)\n"
      "  saelab train --set architecture=topk --json    # the toy run with a TopK SAE\n"
      "  saelab train my_run.toml --set lr=1e-4 --run-dir runs/a\n"
      "  saelab train --resume runs/a                   # continue after Ctrl-C / SIGTERM\n"
      "  saelab train --set l1_coefficient=[0.5,1,2,4]  # a sweep: 4 SAEs on one activation "
      "stream\n"
      "Exit codes: 0 done; 130 / 143 stopped by SIGINT / SIGTERM after writing a checkpoint; 1 "
      "error.");
  return [a] { return run_train(*a); };
};

}  // namespace
SAELAB_COMMAND("train", "Train an SAE (default: the embedded toy run)", setup);
