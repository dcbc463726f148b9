// The text of configs/toy.toml, embedded so that `saelab train` with no config runs the default toy
// job from any directory. tests/train/test_train_cli.cpp checks that it equals the file.
#include "saelab/config/default_config.h"

namespace saelab {

const char* default_toy_config_toml() {
  return R"toy(# The default run of `saelab train` (and `make demo`): an SAE on a toy model of superposition,
# 512 known feature directions packed into 64 dimensions, each firing on 0.5% of tokens (below the
# 1% line where a latent counts as dense, so a healthy run reads healthy). The run
# logs how well the decoder recovers them (metrics/mmcs, metrics/features_recovered).
# This text is embedded in the saelab binary; try another architecture with
#   saelab train --set architecture=topk      (gated, topk, batchtopk, jumprelu, matryoshka_batchtopk)

run_name = "toy"
checkpoint_path = "checkpoints"
dataset_path = "toy"
seed = 42

# --- the toy model
d_in = 64
toy_n_features = 512
toy_feature_probability = 0.005
toy_magnitude_mean = 1.0
toy_magnitude_std = 0.25
toy_seed = 0

# --- the SAE
architecture = "standard"
d_sae = 1024
activation_fn_kwargs = { k = 8 }          # topk, batchtopk, matryoshka_batchtopk
matryoshka_widths = [128, 512, 1024]      # matryoshka_batchtopk
b_dec_init_method = "geometric_median"
normalize_sae_decoder = false
decoder_heuristic_init = true
init_encoder_as_decoder_transpose = true
scale_sparsity_penalty_by_decoder_norm = true

# --- training
training_tokens = 1_228_800                # 1200 steps
train_batch_size_tokens = 1024
lr = 0.003
adam_beta1 = 0.9
adam_beta2 = 0.999
lr_scheduler_name = "constant"
lr_warm_up_steps = 20
lr_decay_steps = 200
l1_coefficient = 1.0
l1_warm_up_steps = 100
l0_coefficient = 0.03                     # jumprelu
l0_warm_up_steps = 100
jumprelu_init_threshold = 0.1
jumprelu_bandwidth = 0.05

# --- dead latents, logging, checkpoints
feature_sampling_window = 200
dead_feature_window = 100
resample_dead_latents = true
wandb_log_frequency = 25
n_checkpoints = 2
log_to_wandb = false
)toy";
}

}  // namespace saelab
