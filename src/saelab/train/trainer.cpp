// The training loop (see trainer.h): construction, initialisation, one step, checkpoints and the
// run as a whole. Logging, resampling and the final evaluation live in trainer_metrics.cpp.
#include "saelab/train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "saelab/core/collectives.h"
#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/log/metrics_logger.h"
#include "saelab/log/progress.h"
#include "saelab/sae/kernels/fast_loops.h"
#include "saelab/sae/kernels/fire_counts.h"
#include "saelab/sae/registry.h"
#include "saelab/sae/sae.h"
#include "saelab/train/checkpoint.h"
#include "saelab/train/init.h"
#include "saelab/train/update.h"

namespace saelab {

Trainer::Trainer(RunnerConfig cfg, std::unique_ptr<ActivationSource> source, TrainerOptions opts)
    : cfg_(std::move(cfg)),
      source_(std::move(source)),
      opts_(std::move(opts)),
      adam_(cfg_.adam_beta1, cfg_.adam_beta2),
      gen_(at::detail::createCPUGenerator(static_cast<uint64_t>(cfg_.seed))) {
  if (!source_) fail("trainer: no activation source");
  if (source_->d_in() != cfg_.d_in)
    fail("d_in: the config says {} but the activation source gives rows of {} ({})", cfg_.d_in,
         source_->d_in(), source_->describe());
  const int64_t d_out = training_sae_config(cfg_).d_out;
  if (source_->d_out() != d_out)
    fail(
        "d_out: the config says {} but the activation source gives {} output values per row "
        "({}){}",
        d_out, source_->d_out(), source_->describe(),
        d_out > 0 ? "; a transcoder needs its output activations (hook_name_out)" : "");
  if (cfg_.steps() < 1)
    fail("training_tokens: expected at least one batch of train_batch_size_tokens={}, got {}",
         cfg_.train_batch_size_tokens, cfg_.training_tokens);
  if (distributed()) {
    const int W = opts_.dist->world_size();
    if (cfg_.train_batch_size_tokens % W != 0)
      fail(
          "train_batch_size_tokens = {}: expected a multiple of the world size {} (each rank "
          "trains on an equal share of the global batch)",
          cfg_.train_batch_size_tokens, W);
    if (cfg_.mse_loss_normalization)
      fail(
          "mse_loss_normalization = '{}': normalises by the whole batch's statistics, which "
          "distributed training does not gather; leave it unset with WORLD_SIZE > 1",
          *cfg_.mse_loss_normalization);
  }
  device_ = training_device(cfg_.device);
  sae_ = make_training_sae(training_sae_config(cfg_));
  schedule_.name = cfg_.lr_scheduler_name;
  schedule_.lr = cfg_.lr;
  schedule_.steps = cfg_.steps();
  schedule_.warm_up_steps = cfg_.lr_warm_up_steps;
  schedule_.decay_steps = cfg_.lr_decay_steps;
  schedule_.lr_end = cfg_.resolved_lr_end();
  schedule_.n_restart_cycles = cfg_.n_restart_cycles;
  schedule_.validate();
  const int64_t d_sae = sae_->cfg().d_sae;
  since_fired_ = torch::zeros({d_sae}, torch::kInt64);
  window_fires_ = torch::zeros({d_sae}, torch::kFloat64);
  for (int64_t i = 1; i <= cfg_.n_checkpoints; ++i) {
    int64_t s = i * cfg_.steps() / cfg_.n_checkpoints;
    if (s > 0) checkpoint_steps_.insert(s);
  }
}

Trainer::~Trainer() = default;

bool Trainer::distributed() const { return saelab::distributed(opts_.dist.get()); }
bool Trainer::writes_files() const { return !distributed() || opts_.dist->rank() == 0; }

SaeConfig inference_sae_config(const RunnerConfig& cfg) {
  SaeConfig c = to_sae_config(cfg);
  // The trainer folds the dataset-wide scale into the weights, so the saved SAE does not scale.
  if (c.normalize_activations == "expected_average_only_in") c.normalize_activations = "none";
  return c;
}

std::unique_ptr<Sae> Trainer::inference_sae() const {
  return sae_->to_inference(inference_sae_config(cfg_), scale_, scale_out_);
}

void Trainer::estimate_scales(const Batch& b) {
  scale_ = estimate_norm_scaling_factor(b.x);
  scale_out_ = b.y.is_same(b.x) ? scale_ : estimate_norm_scaling_factor(b.y);
}

Trainer::Batch Trainer::split(const at::Tensor& rows) const {
  const int64_t d_out = source_->d_out();
  if (d_out == 0) return {rows, rows};
  return {rows.narrow(1, 0, cfg_.d_in), rows.narrow(1, cfg_.d_in, d_out)};
}

// Run-time normalisation of a raw batch into the space the SAE trains in.
static at::Tensor normalize_batch(const at::Tensor& x, const std::string& mode, double scale) {
  if (mode == "expected_average_only_in") return x * scale;
  if (mode == "constant_norm_rescale") return x * constant_norm_rescale_factor(x);
  if (mode == "layer_norm") {
    auto centred = x - x.mean({-1}, true);
    return centred / (centred.std({-1}, /*unbiased=*/true, /*keepdim=*/true) + 1e-5);
  }
  return x;
}

// A NaN or infinity in the input poisons the SAE within a step: stop at the first batch that holds
// one, naming where it is (one pass over the batch, small beside the step itself).
static void require_finite(const at::Tensor& x, const std::string& which, const std::string& source,
                           const std::string& last_checkpoint) {
  if (fast::raw_loop_ok(x) ? fast::all_finite(x) : at::isfinite(x).all().item<bool>()) return;
  const int64_t row = (~at::isfinite(x)).any(1).nonzero()[0][0].item<int64_t>();
  fail(
      "input activations contain NaN or infinity: {}, row {} of {}, from {}; last good checkpoint: "
      "{}",
      which, row, x.size(0), source, last_checkpoint.empty() ? "none" : last_checkpoint);
}

void Trainer::initialize() {
  const bool scale = cfg_.normalize_activations == "expected_average_only_in";
  if (cfg_.from_pretrained_path) {
    // As SAELens: a pretrained SAE replaces initialisation (b_dec included); only the dataset-wide
    // scale is estimated, since the saved weights have it folded in.
    if (scale)
      estimate_scales(
          split(source_->next_batch(std::max<int64_t>(cfg_.train_batch_size_tokens, 8192))));
    const std::string where = "from_pretrained_path = '" + *cfg_.from_pretrained_path + "'";
    std::unique_ptr<Sae> pretrained;
    try {
      pretrained = load_sae(*cfg_.from_pretrained_path);
    } catch (const Error& e) {
      fail("{}: {}", where, e.what());
    }
    sae_->load_inference(*pretrained, scale_, scale_out_, where);
    to_device();
    share_rank0_parameters();
    initialized_ = true;
    return;
  }
  init_sae_weights(*sae_, sae_init_options(cfg_), gen_);
  if (cfg_.b_dec_init_method != "zeros" || scale) {
    // SAELens estimates both from the first buffer; we draw a dedicated sample of >= 8192 rows.
    auto sample = source_->next_batch(std::max<int64_t>(cfg_.train_batch_size_tokens, 8192));
    require_finite(sample, "the sample that initialises b_dec and the scale (before step 1)",
                   source_->describe(), last_checkpoint_);
    const Batch b = split(sample);
    if (scale) estimate_scales(b);
    // b_dec is the bias of the decoder's output: initialised from what it reconstructs.
    init_b_dec(*sae_, cfg_.b_dec_init_method,
               normalize_batch(b.y, cfg_.normalize_activations, scale_out_));
  } else {
    init_b_dec(*sae_, "zeros", at::Tensor());
  }
  to_device();
  share_rank0_parameters();
  initialized_ = true;
}

// Every rank initialises from the same seed and the same sample, so this only guards against a
// difference in rounding between machines: training starts from one set of weights.
void Trainer::share_rank0_parameters() {
  if (!distributed()) return;
  for (auto* group : {&sae_->params(), &sae_->buffers()})
    for (auto& [name, t] : *group) opts_.dist->broadcast_(t, 0);
  at::Tensor s = torch::tensor({scale_, scale_out_}, torch::kFloat64);
  opts_.dist->broadcast_(s, 0);
  scale_ = s[0].item<double>();
  scale_out_ = s[1].item<double>();
}

void Trainer::average_gradients(
    std::vector<std::pair<std::string, std::unique_ptr<Collectives::Pending>>>& started) {
  if (!distributed()) return;
  const double W = static_cast<double>(opts_.dist->world_size());
  std::set<std::string> announced;
  for (const auto& [name, p] : started) announced.insert(name);
  std::vector<at::Tensor> parts;
  for (auto& [name, g] : sae_->grads())
    if (g.defined() && !announced.count(name)) parts.push_back(g.reshape({-1}));
  at::Tensor flat = parts.empty() ? at::Tensor() : torch::cat(parts);
  if (flat.defined()) opts_.dist->sum_(flat);
  for (auto& [name, p] : started) {
    p->wait();
    sae_->grads().at(name).div_(W);
  }
  if (!flat.defined()) return;
  flat.div_(W);
  int64_t off = 0;
  for (auto& [name, g] : sae_->grads()) {
    if (!g.defined() || announced.count(name)) continue;
    g.copy_(flat.narrow(0, off, g.numel()).view_as(g));
    off += g.numel();
  }
}

Trainer::Batch Trainer::next_batch() {
  const int64_t n = cfg_.train_batch_size_tokens;
  auto x = source_->next_batch(n);
  const int64_t width = cfg_.d_in + source_->d_out();
  if (x.dim() != 2 || x.size(0) != n || x.size(1) != width)
    fail("activation source ({}): expected a batch [{}, {}]", source_->describe(), n, width);
  require_finite(x,
                 fmt::format("batch of step {} (tokens {}..{} of the run)", step_ + 1, n_tokens_,
                             n_tokens_ + n),
                 source_->describe(), last_checkpoint_);
  if (distributed()) {
    // This rank's contiguous share of the global batch.
    const int64_t share = n / opts_.dist->world_size();
    x = x.narrow(0, share * opts_.dist->rank(), share);
  }
  const Batch b = split(x.to(device_, sae_->cfg().dtype));
  auto xn = normalize_batch(b.x, cfg_.normalize_activations, scale_);
  if (b.y.is_same(b.x)) return {xn, xn};
  return {xn, normalize_batch(b.y, cfg_.normalize_activations, scale_out_)};
}

// Initialisation and checkpoints work on CPU; the step runs on device_.
void Trainer::to_device() {
  if (device_.is_cpu()) return;
  sae_->to(device_);
  adam_.to(device_);
  since_fired_ = since_fired_.to(device_);
  window_fires_ = window_fires_.to(device_);
}

at::Tensor Trainer::dead_mask() const { return since_fired_ > cfg_.dead_feature_window; }

void Trainer::update_firing_stats(TrainStepOutput& out) {
  at::Tensor counts =
      (out.fire_counts.defined() ? out.fire_counts : count_positive_per_column(out.feature_acts))
          .to(torch::kFloat64);
  const int64_t d_sae = counts.numel();
  int64_t rows = out.feature_acts.size(0);
  if (distributed()) {
    // One float64 all-reduce: the fire counts, the losses (each rank's are means over its rows)
    // and the stop flag, so that every rank agrees on statistics, logs and when to stop.
    const int sig = opts_.stop_signal ? opts_.stop_signal->load() : 0;
    std::vector<double> extra{out.loss};
    for (const auto& [k, v] : out.losses) extra.push_back(v);
    extra.push_back(sig != 0 ? 1.0 : 0.0);
    extra.push_back(static_cast<double>(sig));
    at::Tensor packed = torch::cat({counts.cpu(), torch::tensor(extra, torch::kFloat64)});
    opts_.dist->sum_(packed);
    const double W = opts_.dist->world_size();
    auto p = packed.accessor<double, 1>();
    out.loss = p[d_sae] / W;
    int64_t i = d_sae + 1;
    for (auto& [k, v] : out.losses) v = p[i++] / W;
    stop_all_ = p[i] > 0;
    stop_signal_all_ = stop_all_ ? static_cast<int>(p[i + 1] / p[i]) : 0;
    counts = packed.narrow(0, 0, d_sae).to(counts.device());
    rows *= opts_.dist->world_size();
  }
  window_fires_ += counts;
  window_tokens_ += rows;
  since_fired_ += 1;
  since_fired_.masked_fill_(counts > 0, 0);
  last_l0_ = counts.sum().item<double>() / static_cast<double>(rows);
}

void Trainer::train_step() {
  using Clock = std::chrono::steady_clock;
  const auto t_wait = Clock::now();
  const Batch b = next_batch();
  const auto t_step = Clock::now();
  source_wait_seconds_ += std::chrono::duration<double>(t_step - t_wait).count();
  StepContext ctx;
  ctx.l1_coefficient = coefficient_at(cfg_.l1_coefficient, cfg_.l1_warm_up_steps, step_);
  ctx.l0_coefficient = coefficient_at(cfg_.l0_coefficient, cfg_.l0_warm_up_steps, step_);
  ctx.dead_mask = dead_mask();
  ctx.dist = opts_.dist.get();
  std::vector<std::pair<std::string, std::unique_ptr<Collectives::Pending>>> started;
  if (distributed())
    ctx.grad_ready = [&](const std::string& name) {
      started.emplace_back(name, opts_.dist->start_sum_(sae_->grads().at(name)));
    };
  auto out = sae_->step(b.x, b.y, ctx);
  average_gradients(started);
  update_firing_stats(out);
  if (!std::isfinite(out.loss))
    fail("loss is {} at step {}; last good checkpoint: {}", std::isnan(out.loss) ? "nan" : "inf",
         step_ + 1, last_checkpoint_.empty() ? "none" : last_checkpoint_);
  last_out_mse_ = out.losses["mse_loss"];
  const double lr = schedule_.at(step_);
  apply_update(*sae_, adam_, out, lr, cfg_.normalize_sae_decoder);
  step_seconds_ += std::chrono::duration<double>(Clock::now() - t_step).count();
  ++step_;
  n_tokens_ += cfg_.train_batch_size_tokens;

  if (cfg_.wandb_log_frequency > 0 && step_ % cfg_.wandb_log_frequency == 0)
    log_step(b.y, out, lr,
             find_architecture(cfg_.architecture, "architecture").sparsity_coefficient ==
                     "l0_coefficient"
                 ? ctx.l0_coefficient
                 : ctx.l1_coefficient);
  if (cfg_.feature_sampling_window > 0 && step_ % cfg_.feature_sampling_window == 0)
    log_density_and_resample(b.x);
  if (opts_.model_eval && cfg_.wandb_log_frequency > 0 && cfg_.eval_every_n_wandb_logs > 0 &&
      step_ % (cfg_.wandb_log_frequency * cfg_.eval_every_n_wandb_logs) == 0)
    run_model_eval();
  if (progress_) {
    ProgressStats ps;
    ps.mse = out.losses["mse_loss"];
    ps.l0 = last_l0_;
    ps.dead = dead_mask().sum().item<int64_t>();
    progress_->update(n_tokens_, ps);
  }
  if (checkpoint_steps_.count(step_)) save_checkpoint();
}

std::string Trainer::save_checkpoint() {
  CheckpointData d;
  for (const auto& [name, t] : sae_->params()) d.tensors["param." + name] = t;
  for (const auto& [name, t] : sae_->buffers()) d.tensors["buffer." + name] = t;
  adam_.save(d.tensors, d.state);
  d.tensors["since_fired"] = since_fired_;
  d.tensors["window_fires"] = window_fires_;
  if (last_window_log10_.defined()) d.tensors["last_window_log10_density"] = last_window_log10_;
  d.tensors["rng_state"] = gen_.get_state();
  d.state["saelab_trainer_state_version"] = 1;
  d.state["architecture"] = cfg_.architecture;
  d.state["d_sae"] = sae_->cfg().d_sae;
  d.state["step"] = step_;
  d.state["n_training_tokens"] = n_tokens_;
  d.state["activation_scale"] = scale_;
  d.state["activation_scale_out"] = scale_out_;
  d.state["window_tokens"] = window_tokens_;
  d.state["source_state"] = source_->state();
  std::string dir = opts_.run_dir + "/checkpoints/" + std::to_string(n_tokens_);
  if (writes_files()) write_checkpoint(dir, *inference_sae(), sparsity_for_save(), d);
  // No rank runs ahead of a checkpoint that is not on disk yet.
  if (distributed()) opts_.dist->barrier();
  last_checkpoint_ = dir;
  return dir;
}

void Trainer::resume_from(const std::string& dir) {
  auto d = read_checkpoint(dir);
  const std::string where = dir + "/trainer_state.json";
  auto arch = get_field<std::string>(d.state, "architecture", where);
  auto d_sae = get_field<int64_t>(d.state, "d_sae", where);
  if (arch != cfg_.architecture || d_sae != sae_->cfg().d_sae)
    fail("{}: checkpoint is a {} SAE with d_sae={}, but the config asks for {} with d_sae={}",
         where, arch, d_sae, cfg_.architecture, sae_->cfg().d_sae);
  auto take = [&](const std::string& key, const at::Tensor& like) {
    auto it = d.tensors.find(key);
    if (it == d.tensors.end()) fail("{}/trainer_state.safetensors: missing tensor '{}'", dir, key);
    if (like.defined() && it->second.sizes() != like.sizes())
      fail("{}/trainer_state.safetensors: tensor '{}' has the wrong shape", dir, key);
    return it->second.clone();
  };
  for (auto& [name, t] : sae_->params()) t = take("param." + name, t).to(t.scalar_type());
  for (auto& [name, t] : sae_->buffers()) t = take("buffer." + name, t).to(t.scalar_type());
  adam_.load(d.tensors, d.state);
  since_fired_ = take("since_fired", since_fired_).to(torch::kInt64);
  window_fires_ = take("window_fires", window_fires_).to(torch::kFloat64);
  if (d.tensors.count("last_window_log10_density"))
    last_window_log10_ = take("last_window_log10_density", at::Tensor());
  gen_.set_state(take("rng_state", at::Tensor()));
  step_ = get_field<int64_t>(d.state, "step", where);
  n_tokens_ = get_field<int64_t>(d.state, "n_training_tokens", where);
  scale_ = get_field<double>(d.state, "activation_scale", where);
  scale_out_ = d.state.value("activation_scale_out", scale_);
  window_tokens_ = get_field<int64_t>(d.state, "window_tokens", where);
  if (!d.state.contains("source_state")) fail("{}: missing 'source_state'", where);
  source_->load_state(d.state["source_state"]);
  to_device();
  initialized_ = true;
  resumed_ = true;
  last_checkpoint_ = dir;
}

TrainSummary Trainer::run() {
  auto t0 = std::chrono::steady_clock::now();
  if (writes_files()) {
    make_dirs(opts_.run_dir);
    if (!path_exists(opts_.run_dir + "/config.toml"))
      write_file_atomic(opts_.run_dir + "/config.toml", to_toml(cfg_));
  }
  if (opts_.log_files && writes_files()) {
    MetricsLoggerOptions lo;
    lo.resume_step = resumed_ ? step_ : -1;
    logger_ = std::make_unique<MetricsLogger>(opts_.run_dir, lo);
  }
  const int64_t steps = cfg_.steps();
  if (opts_.progress && writes_files()) {
    ProgressOptions po;
    po.total_tokens = steps * cfg_.train_batch_size_tokens;
    po.quiet = opts_.quiet;
    progress_ = std::make_unique<ConsoleProgress>(po);
    progress_->set_start_tokens(n_tokens_);
  }
  if (!initialized_) initialize();

  TrainSummary s;
  s.run_dir = opts_.run_dir;
  s.architecture = cfg_.architecture;
  const auto loop_t0 = std::chrono::steady_clock::now();
  const int64_t loop_step0 = step_;
  step_seconds_ = source_wait_seconds_ = 0.0;
  while (step_ < steps) {
    // Across ranks the flag agreed at the end of the last step decides, so all stop together.
    if (distributed() ? stop_all_ : opts_.stop_signal && opts_.stop_signal->load() != 0) {
      s.stop_signal = distributed() ? stop_signal_all_ : opts_.stop_signal->load();
      break;
    }
    train_step();
  }
  if (logger_) logger_->flush();
  s.loop_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - loop_t0).count();
  s.loop_steps = step_ - loop_step0;
  s.step_seconds = step_seconds_;
  s.source_wait_seconds = source_wait_seconds_;
  if (s.stop_signal != 0) {
    if (last_checkpoint_.empty() ||
        last_checkpoint_ != opts_.run_dir + "/checkpoints/" + std::to_string(n_tokens_))
      save_checkpoint();
    if (progress_)
      progress_->message("stopped by signal " + std::to_string(s.stop_signal) +
                         "; checkpoint: " + last_checkpoint_);
  } else {
    if (progress_) {
      ProgressStats ps;
      ps.mse = last_out_mse_;
      ps.l0 = last_l0_;
      ps.dead = dead_mask().sum().item<int64_t>();
      progress_->finish(n_tokens_, ps);
    }
    // The step's [N, d_sae] work buffers and the gradients are not needed any more: freed, they
    // leave room for the evaluation's own (they were the run's peak of memory with it). A later
    // step would allocate them again.
    sae_->release_work_buffers();
    for (auto& [name, g] : sae_->grads()) g = at::Tensor();
    // The held-out evaluation first: its density of the final SAE is what final/ records.
    s.eval = final_eval();
    s.final_dir = opts_.run_dir + "/final";
    try {
      if (writes_files())
        write_final_sae(
            opts_.run_dir, *inference_sae(),
            final_log10_density_.defined() ? final_log10_density_ : sparsity_for_save());
    } catch (const Error& e) {
      fail("cannot write the final SAE {}: {}; last good checkpoint: {}", s.final_dir, e.what(),
           last_checkpoint_.empty() ? "none" : last_checkpoint_);
    }
    if (distributed()) opts_.dist->barrier();
    s.completed = true;
  }
  s.last_checkpoint = last_checkpoint_;
  s.steps = step_;
  s.n_training_tokens = n_tokens_;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

TrainSummary TrainSummary::from_json(const json& j) {
  TrainSummary s;
  s.run_dir = j.value("run_dir", "");
  s.final_dir = j.value("final_dir", "");
  s.last_checkpoint = j.value("last_checkpoint", "");
  s.architecture = j.value("architecture", "");
  s.steps = j.value("steps", int64_t{0});
  s.n_training_tokens = j.value("n_training_tokens", int64_t{0});
  s.completed = j.value("completed", false);
  s.stop_signal = j.value("stop_signal", 0);
  s.seconds = j.value("seconds", 0.0);
  s.loop_seconds = j.value("loop_seconds", 0.0);
  s.step_seconds = j.value("step_seconds", 0.0);
  s.source_wait_seconds = j.value("source_wait_seconds", 0.0);
  s.loop_steps = j.value("loop_steps", int64_t{0});
  // Every key to_json writes besides the eval's is a field read above.
  const json fields = TrainSummary{}.to_json();
  for (const auto& [k, v] : j.items())
    if (!fields.contains(k)) s.eval[k] = v;
  return s;
}

json TrainSummary::to_json() const {
  json j = {{"run_dir", run_dir},
            {"final_dir", final_dir},
            {"last_checkpoint", last_checkpoint},
            {"architecture", architecture},
            {"steps", steps},
            {"n_training_tokens", n_training_tokens},
            {"completed", completed},
            {"stop_signal", stop_signal},
            {"seconds", seconds},
            {"loop_seconds", loop_seconds},
            {"step_seconds", step_seconds},
            {"source_wait_seconds", source_wait_seconds},
            {"loop_steps", loop_steps}};
  for (const auto& [k, v] : eval.items()) j[k] = v;
  return j;
}

}  // namespace saelab
