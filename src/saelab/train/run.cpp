// A `saelab train` invocation (run.h).
#include "saelab/train/run.h"

#include <chrono>
#include <sstream>

#include "saelab/config/default_config.h"
#include "saelab/config/runner_config.h"
#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/dist/process_group.h"
#include "saelab/log/run_error.h"
#include "saelab/train/checkpoint.h"
#include "saelab/train/sources.h"
#include "saelab/train/stop_signal.h"
#include "saelab/vis/report.h"

namespace saelab {
namespace {

constexpr const char* kEmbeddedName = "configs/toy.toml (embedded)";

// The data-parallel ranks of this invocation (torchrun's environment, or `--nproc`'s): none for a
// single process. Rank 0 chooses the run directory, prints and writes; every rank trains.
struct Ranks {
  std::optional<DistEnv> env;
  std::unique_ptr<DistContext> ctx;
  std::shared_ptr<Collectives> train, data;  // the trainer's group; the store's model exchange
  bool writer() const { return !env || env->rank == 0; }
  bool many() const { return env && env->world_size > 1; }
};

// How long a rank waits for the others at the rendezvous and in a collective.
std::chrono::milliseconds dist_timeout() {
  const char* v = std::getenv("SAELAB_DIST_TIMEOUT_SECONDS");
  const long s = v && *v ? std::strtol(v, nullptr, 10) : 600;
  return std::chrono::milliseconds(1000 * std::max(1L, s));
}

// The process groups, made once the config names the device (Gloo on the CPU, NCCL on CUDA).
void join_groups(Ranks& ranks, RunnerConfig& cfg) {
  if (!ranks.many()) return;
  // Each rank trains on its own GPU.
  if (cfg.device == "cuda") cfg.device = "cuda:" + std::to_string(ranks.env->local_rank);
  if (!ranks.train) {
    const std::chrono::milliseconds timeout(1000 * cfg.ddp_timeout_s);
    ranks.train = ranks.ctx->group("train", cfg.device, timeout);
    ranks.data = ranks.ctx->group("data", "cpu", timeout);
  }
}

// Every rank must run the same resolved config (`text`, before join_groups names a rank's GPU): a
// rank started with another file or other --set values would train something else. Every rank
// sees every rank's text and all stop, before step 1, with the same line naming the first
// difference.
void check_same_config(const Ranks& ranks, const std::string& text) {
  if (!ranks.many()) return;
  const std::string first = ranks.train->broadcast_string(text, 0);
  std::string error;
  for (int r = 1; r < ranks.env->world_size; ++r) {
    const std::string theirs = ranks.train->broadcast_string(r == ranks.env->rank ? text : "", r);
    if (theirs == first || !error.empty()) continue;
    std::istringstream a(first), b(theirs);
    std::string la, lb;
    while (true) {
      const bool more_a = bool(std::getline(a, la)), more_b = bool(std::getline(b, lb));
      if (!more_a) la = "(nothing)";
      if (!more_b) lb = "(nothing)";
      if (la != lb || (!more_a && !more_b)) break;
    }
    error = fmt::format(
        "rank {} was started with another config than rank 0 (rank {}: `{}`, rank 0: `{}`); every "
        "rank must run the same config file and --set values",
        r, r, lb, la);
  }
  if (!error.empty()) throw Error(error);
}

RunnerConfig load_config(const TrainRequest& r) {
  if (!r.resume.empty()) {
    if (!r.config.empty()) fail("train: give either CONFIG or --resume RUN_DIR, not both");
    const std::string path = r.resume + "/config.toml";
    if (!path_exists(path))
      fail("{}: expected the config.toml of a saelab run directory (--resume)", path);
    return load_runner_config(path, r.sets);
  }
  if (!r.config.empty()) return load_runner_config(r.config, r.sets);
  return load_runner_config_text(default_toy_config_toml(), kEmbeddedName, r.sets);
}

// `taken` tells whether a directory already holds a run (or a sweep). Across ranks, rank 0's
// choice (every rank checking would race with rank 0 creating it).
std::string choose_dir_here(const std::string& base, const std::string& given,
                            bool (*taken)(const std::string&));
std::string choose_dir(const Ranks& ranks, const std::string& base, const std::string& given,
                       bool (*taken)(const std::string&)) {
  if (!ranks.many()) return choose_dir_here(base, given, taken);
  std::string dir, error;
  if (ranks.writer()) try {
      dir = choose_dir_here(base, given, taken);
    } catch (const Error& e) {
      error = e.what();
    }
  error = ranks.train->broadcast_string(error, 0);
  if (!error.empty()) throw Error(error);
  return ranks.train->broadcast_string(dir, 0);
}

std::string choose_dir_here(const std::string& base, const std::string& given,
                            bool (*taken)(const std::string&)) {
  if (!given.empty()) {
    if (taken(given))
      fail(
          "{}: already holds a run or a sweep; continue it with --resume {} or pick another "
          "--run-dir",
          given, given);
    return given;
  }
  std::string dir = base;
  for (int i = 2; taken(dir); ++i) dir = base + "_" + std::to_string(i);
  return dir;
}

bool holds_run(const std::string& d) { return path_exists(d + "/config.toml"); }
bool holds_run_or_sweep(const std::string& d) { return holds_run(d) || is_sweep_dir(d); }

// `wandb sync` uploads the TensorBoard files into the config's W&B project (and entity, run id).
void print_wandb_sync(std::FILE* msg, const RunnerConfig& c, const std::string& dirs,
                      const char* what) {
  std::string cmd = "wandb sync -p " + c.wandb_project;
  if (c.wandb_entity) cmd += " -e " + *c.wandb_entity;
  if (c.wandb_id) cmd += " --id " + *c.wandb_id;
  std::fprintf(msg, "%s %s uploads %s TensorBoard files to Weights & Biases\n", cmd.c_str(),
               dirs.c_str(), what);
}

TrainOutcome train_single(const RunnerConfig& cfg, const std::string& run_dir,
                          const TrainRequest& r, const Ranks& ranks) {
  std::FILE* msg = r.messages;
  auto source = make_activation_source(cfg, ranks.data);
  TrainerOptions opts;
  opts.run_dir = run_dir;
  opts.quiet = r.quiet;
  // verbose = false: no progress bar and no start-of-run message (SAELens prints less too).
  opts.progress = cfg.verbose;
  opts.stop_signal = &install_stop_signal_handlers();
  opts.dist = ranks.train;
  // A language model's activations: CE/KL evals every eval step and at the end, on that model
  // (rank 0's: they log what only rank 0 writes).
  if (auto* store = dynamic_cast<ActivationsStore*>(source.get()); store && ranks.writer())
    opts.model_eval = make_model_eval(cfg, *store);
  const std::string describe = source->describe();
  Trainer trainer(cfg, std::move(source), opts);
  if (!r.resume.empty()) {
    // --set on a resumed run changes its config from here on; the run directory records it.
    if (!r.sets.empty() && ranks.writer())
      write_file_atomic(run_dir + "/config.toml", to_toml(cfg));
    // The newest checkpoint that reads back whole; broken newer ones (a truncated file, a disk
    // that filled) are named and skipped. None whole: the newest one's fault is the error.
    if (const int n = ranks.writer() ? remove_stale_temporaries(run_dir) : 0; n > 0)
      std::fprintf(msg, "removed %d unfinished checkpoint write%s left by a killed run\n", n,
                   n == 1 ? "" : "s");
    if (ranks.many()) ranks.train->barrier();
    const std::vector<std::string> all = checkpoints_newest_first(run_dir);
    std::string ckpt;
    std::vector<std::string> skipped;
    for (const auto& c : all) {
      try {
        trainer.resume_from(c);
        ckpt = c;
        break;
      } catch (const Error& e) {
        skipped.push_back(e.what());
      }
    }
    if (all.empty()) {
      std::fprintf(msg, "no checkpoint in %s/checkpoints; starting the run from the beginning\n",
                   run_dir.c_str());
    } else if (ckpt.empty()) {
      fail("{}", all.size() == 1
                     ? skipped[0]
                     : fmt::format("none of the {} checkpoints in {}/checkpoints can be "
                                   "read; the newest: {}",
                                   all.size(), run_dir, skipped[0]));
    } else {
      for (size_t i = 0; i < skipped.size(); ++i)
        std::fprintf(stderr, "saelab: warning: skipping checkpoint %s: %s\n", all[i].c_str(),
                     skipped[i].c_str());
      std::fprintf(msg, "resuming from %s (step %lld)\n", ckpt.c_str(),
                   static_cast<long long>(trainer.step()));
    }
  }
  if (cfg.verbose)
    std::fprintf(
        msg, "training a %s %s (d_in=%lld, d_sae=%lld%s) on %s for %lld steps -> %s/\n",
        cfg.architecture.c_str(),
        !cfg.hook_name_out    ? "SAE"
        : cfg.skip_connection ? "skip transcoder"
                              : "transcoder",
        static_cast<long long>(cfg.d_in), static_cast<long long>(cfg.resolved_d_sae()),
        cfg.hook_name_out ? fmt::format(", d_out={}", cfg.d_out.value_or(cfg.d_in)).c_str() : "",
        describe.c_str(), static_cast<long long>(cfg.steps()), run_dir.c_str());
  if (cfg.verbose && ranks.many())
    std::fprintf(
        msg,
        "data parallel over %d ranks (%s): each trains on %lld of the %lld tokens of every "
        "batch\n",
        ranks.env->world_size, cfg.device.rfind("cuda", 0) == 0 ? "NCCL or Gloo" : "Gloo",
        static_cast<long long>(cfg.train_batch_size_tokens / ranks.env->world_size),
        static_cast<long long>(cfg.train_batch_size_tokens));
  std::fflush(msg);
  TrainOutcome out;
  out.run_dir = run_dir;
  out.summary = trainer.run();
  if (cfg.log_to_wandb) print_wandb_sync(msg, cfg, run_dir + "/", "the run's");
  out.exit_code = out.summary.completed ? 0 : 128 + out.summary.stop_signal;
  return out;
}

TrainOutcome train_sweep(const SweepSpec& spec, const std::string& dir, bool resume,
                         const TrainRequest& r, const Ranks& ranks) {
  std::FILE* msg = r.messages;
  const RunnerConfig& c0 = spec.members.at(0).cfg;
  SweepOptions so;
  so.run_dir = dir;
  so.quiet = r.quiet;
  so.progress = c0.verbose && ranks.writer();
  // Over ranks every rank holds the whole stream: the toy and cached activations are read whole
  // on every rank; a model runs on each rank's share of the prompts and the rows are exchanged
  // (each rank records every member's hook, then keeps its own members'). A sweep over hook_name
  // records its hooks in one forward pass.
  const std::vector<std::string> all_hooks = sweep_hook_names(spec);
  so.hook_blocks =
      ranks.many() ? sweep_hook_names(spec, size_t(ranks.env->rank), size_t(ranks.env->world_size))
                   : all_hooks;
  RunnerConfig first = c0;
  first.hook_name = so.hook_blocks.at(0);
  auto source = make_activation_source(
      first, ranks.many() ? ranks.data : nullptr,
      std::vector<std::string>(so.hook_blocks.begin() + 1, so.hook_blocks.end()),
      ranks.many() && all_hooks.size() > 1 ? all_hooks : std::vector<std::string>{});
  so.stop_signal = &install_stop_signal_handlers();
  // A language model's activations: each member runs its own CE/KL evals on that model.
  if (auto* store = dynamic_cast<ActivationsStore*>(source.get()))
    so.member_options = [store](const RunnerConfig& c, TrainerOptions& o) {
      o.model_eval = make_model_eval(c, *store);
    };
  if (resume) {
    // --set on a resumed sweep changes every member's config from here on.
    if (!r.sets.empty() && ranks.writer())
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
  std::fprintf(msg, "sweeping %s: %zu SAEs (d_in=%lld) on %s for %lld steps -> %s/\n", keys.c_str(),
               spec.members.size(), static_cast<long long>(c0.d_in), source->describe().c_str(),
               static_cast<long long>(c0.steps()), dir.c_str());
  for (size_t i = 0; i < spec.members.size(); ++i) {
    const auto& m = spec.members[i];
    const std::string where =
        ranks.many() ? fmt::format(", rank {}", i % size_t(ranks.env->world_size)) : "";
    std::fprintf(msg, "  %s  (%s, d_sae=%lld%s)\n", m.name.c_str(), m.cfg.architecture.c_str(),
                 static_cast<long long>(m.cfg.resolved_d_sae()), where.c_str());
  }
  std::fflush(msg);
  TrainOutcome out;
  out.run_dir = dir;
  out.is_sweep = true;
  out.spec = spec;
  out.sweep = ranks.many() ? run_sweep_over_ranks(spec, std::move(source), so, *ranks.train)
                           : run_sweep(spec, std::move(source), so);
  for (const auto& m : spec.members)
    if (m.cfg.log_to_wandb) {
      print_wandb_sync(msg, m.cfg, dir + "/*/", "the members'");
      break;
    }
  out.exit_code =
      out.sweep.stop_signal != 0 ? 128 + out.sweep.stop_signal : (out.sweep.completed ? 0 : 1);
  return out;
}

// Runs `body`, recording a failure in dir/error.txt, where `saelab doctor` finds it (rank 0's;
// the other ranks' errors go to their stderr).
template <typename F>
TrainOutcome recording_errors(const Ranks& ranks, const std::string& dir, F&& body) {
  try {
    return body();
  } catch (const Error& e) {
    if (ranks.writer()) write_run_error(dir, e.what());
    throw;
  }
}

// A sweep's members' resolved configs, one after the other (check_same_config).
std::string sweep_text(const SweepSpec& spec) {
  std::string text;
  for (const auto& m : spec.members) text += "# member " + m.name + "\n" + to_toml(m.cfg);
  return text;
}

TrainOutcome train_any(const TrainRequest& r, Ranks& ranks) {
  // A list of values for a key is a sweep: every combination on one activation stream.
  if (!r.resume.empty() && r.config.empty() && is_sweep_dir(r.resume)) {
    SweepSpec spec = load_sweep_dir(r.resume, r.sets);
    const std::string text = sweep_text(spec);
    for (auto& m : spec.members) join_groups(ranks, m.cfg);
    check_same_config(ranks, text);
    return recording_errors(ranks, r.resume,
                            [&] { return train_sweep(spec, r.resume, true, r, ranks); });
  }
  if (r.resume.empty()) {
    SweepSpec spec = r.config.empty()
                         ? load_sweep_config_text(default_toy_config_toml(), kEmbeddedName, r.sets)
                         : load_sweep_config(r.config, r.sets);
    if (spec.is_sweep()) {
      const std::string text = sweep_text(spec);
      for (auto& m : spec.members) join_groups(ranks, m.cfg);
      check_same_config(ranks, text);
      const std::string dir =
          choose_dir(ranks, spec.members.at(0).cfg.checkpoint_path + "/" + spec.sweep_name,
                     r.run_dir, holds_run_or_sweep);
      return recording_errors(ranks, dir, [&] { return train_sweep(spec, dir, false, r, ranks); });
    }
  }
  RunnerConfig cfg = load_config(r);
  const std::string text = to_toml(cfg);
  join_groups(ranks, cfg);
  check_same_config(ranks, text);
  const std::string dir =
      !r.resume.empty() ? r.resume
                        : choose_dir(ranks, cfg.checkpoint_path + "/" + cfg.resolved_run_name(),
                                     r.run_dir, holds_run);
  return recording_errors(ranks, dir, [&] { return train_single(cfg, dir, r, ranks); });
}

void add_report(TrainOutcome& out) {
  vis::ReportOptions o;
  if (!out.is_sweep) o.train_summary = out.summary.to_json();
  try {
    out.report_path = vis::write_report(out.run_dir, o).path;
  } catch (const Error& e) {
    out.report_error = e.what();
  }
}

}  // namespace

TrainOutcome run_training(const TrainRequest& request) {
  Ranks ranks;
  ranks.env = dist_env_from_environment();
  TrainRequest r = request;
  if (ranks.many()) {
    ranks.ctx = std::make_unique<DistContext>(*ranks.env, dist_timeout());
    // Only rank 0 speaks and writes; the others keep their stderr for warnings and errors.
    if (!ranks.writer()) {
      static std::FILE* devnull = std::fopen("/dev/null", "w");
      r.messages = devnull ? devnull : stderr;
      r.quiet = true;
      r.write_report = false;
    }
  }
  TrainOutcome out = train_any(r, ranks);
  out.speaks = ranks.writer();
  if (r.write_report) add_report(out);
  return out;
}

}  // namespace saelab
