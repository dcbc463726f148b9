// `saelab train` with swept keys (see train_sweep.h and train/sweep.h).
#include "saelab/cli/train_sweep.h"

#include <cstdio>
#include <iostream>

#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/train/sources.h"
#include "saelab/train/stop_signal.h"

namespace saelab::cli {

std::string choose_sweep_dir(const SweepSpec& spec, const std::string& run_dir) {
  auto taken = [](const std::string& d) {
    return path_exists(d + "/config.toml") || path_exists(d + "/sweep.json");
  };
  if (!run_dir.empty()) {
    if (taken(run_dir))
      fail(
          "{}: already holds a run or a sweep; continue it with --resume {} or pick another "
          "--run-dir",
          run_dir, run_dir);
    return run_dir;
  }
  std::string base = spec.members.at(0).cfg.checkpoint_path + "/" + spec.sweep_name;
  std::string dir = base;
  for (int i = 2; taken(dir); ++i) dir = base + "_" + std::to_string(i);
  return dir;
}

namespace {

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

}  // namespace

int train_sweep(const SweepSpec& spec, const std::string& dir, bool resume, bool sets_given,
                bool json_out) {
  std::FILE* msg = json_out ? stderr : stdout;
  const RunnerConfig& c0 = spec.members.at(0).cfg;
  SweepOptions so;
  so.run_dir = dir;
  so.quiet = json_out;
  try {
    auto source = make_activation_source(c0);
    so.stop_signal = &install_stop_signal_handlers();
    // A language model's activations: each member runs its own CE/KL evals on that model.
    if (auto* store = dynamic_cast<ActivationsStore*>(source.get()))
      so.member_options = [store](const RunnerConfig& c, TrainerOptions& o) {
        o.model_eval = make_model_eval(c, *store);
      };
    if (resume) {
      // --set on a resumed sweep changes every member's config from here on.
      if (sets_given)
        for (const auto& m : spec.members)
          write_file_atomic(dir + "/" + m.name + "/config.toml", to_toml(m.cfg));
      so.resume_checkpoints = sweep_resume_checkpoints(spec, dir);
      if (so.resume_checkpoints.at(0).empty())
        std::fprintf(msg,
                     "no checkpoints in the members of %s; starting the sweep from the beginning\n",
                     dir.c_str());
      else
        std::fprintf(
            msg, "resuming every member from checkpoints/%s\n",
            so.resume_checkpoints[0].substr(so.resume_checkpoints[0].rfind('/') + 1).c_str());
    }
    std::string keys;
    for (const auto& k : spec.keys) keys += (keys.empty() ? "" : ", ") + k;
    std::fprintf(msg, "sweeping %s: %zu SAEs (d_in=%lld) on %s for %lld steps -> %s/\n",
                 keys.c_str(), spec.members.size(), static_cast<long long>(c0.d_in),
                 source->describe().c_str(), static_cast<long long>(c0.steps()), dir.c_str());
    for (const auto& m : spec.members)
      std::fprintf(msg, "  %s  (%s, d_sae=%lld)\n", m.name.c_str(), m.cfg.architecture.c_str(),
                   static_cast<long long>(m.cfg.resolved_d_sae()));
    std::fflush(msg);
    SweepResult r = run_sweep(spec, std::move(source), so);
    bool wandb = false;
    for (const auto& m : spec.members) wandb |= m.cfg.log_to_wandb;
    if (wandb)
      std::fprintf(msg,
                   "wandb sync %s/*/ uploads the members' TensorBoard files to Weights & Biases\n",
                   dir.c_str());
    if (json_out) {
      json j = r.to_json(spec);
      j["run_dir"] = dir;
      std::cout << j.dump() << std::endl;
    } else if (r.stop_signal == 0) {
      print_table(spec, r, stdout);
    }
    for (size_t i = 0; i < r.errors.size(); ++i)
      if (!r.errors[i].empty())
        std::fprintf(stderr, "saelab: error: sweep member %s: %s\n", spec.members[i].name.c_str(),
                     r.errors[i].c_str());
    if (r.stop_signal != 0) {
      std::fprintf(msg,
                   "stopped by signal %d; every member wrote a checkpoint; continue with: "
                   "saelab train --resume %s\n",
                   r.stop_signal, dir.c_str());
      return 128 + r.stop_signal;
    }
    return r.completed ? 0 : 1;
  } catch (const Error& e) {
    try {
      make_dirs(dir);
      write_file_atomic(dir + "/error.txt", std::string(e.what()) + "\n");
    } catch (const Error&) {
    }
    throw;
  }
}

}  // namespace saelab::cli
