// The one table of SAE architectures: every architecture's name, what it is saved as, which
// config keys it takes, and its factories (inference, autograd training body, hand-written step).
// Adding an architecture = one folder under sae/ with its factories (see sae/standard/) plus one
// row in registry.cpp. Nothing outside the table compares an architecture name as a string.
// The list names each factory explicitly: self-registering static objects would be dropped by the
// linker from a static library.
#pragma once
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "saelab/sae/config.h"

namespace saelab {

class Sae;
class TrainingSae;
struct TrainingSaeConfig;

struct SaeParamSpec {
  std::string name;            // as in sae_weights.safetensors
  std::vector<int64_t> shape;  // implied by d_in / d_sae
};

struct Architecture {
  std::string name;      // the run config's `architecture`
  std::string saved_as;  // the cfg.json architecture of its inference SAE
  // Parameters of the inference SAE besides W_enc, W_dec and b_dec, each [d_sae], in save order
  // (empty when saved as another architecture).
  std::vector<std::string> inference_params;
  // The activation_fn values it takes; the first is its default (what SAELens 5 records).
  std::vector<std::string> activation_fns;
  bool k_sparse = false;  // takes k (activation_fn_kwargs.k): the number of latents kept per token
  // The config key that scales its sparsity penalty ("" for k-sparse architectures, which have
  // none): the trainer's warm-up and the doctor's advice use it.
  std::string sparsity_coefficient;
  bool ghost_grads = false;  // implements use_ghost_grads
  bool matryoshka = false;   // takes matryoshka_widths
  // Products of 2·N·d_in·d_sae FLOP in one training step (the bench's FLOP count): of the
  // hand-written step and of the autograd body; k-sparse steps add sparse_products of 2·N·k·d_in
  // FLOP per reconstruction level.
  int dense_products_fast = 0;
  int dense_products_autograd = 0;
  int sparse_products = 0;
  std::unique_ptr<Sae> (*make_sae)(const SaeConfig&) = nullptr;  // nullptr: saved as another
  std::unique_ptr<TrainingSae> (*make_training_sae)(const TrainingSaeConfig&) = nullptr;
  // nullptr, or a factory returning nullptr, where only the autograd body implements a config.
  std::unique_ptr<TrainingSae> (*make_fast_training_sae)(const TrainingSaeConfig&) = nullptr;
  // Trains as a transcoder (hook_name_out): its loss compares the decoder's output with a target
  // of its own width. Gated does not: its auxiliary loss reconstructs the input through the gate.
  bool transcoder = false;
};

// Every trainable architecture, in documentation order.
const std::vector<Architecture>& architectures();
// The architecture called `name`, or nullptr.
const Architecture* lookup_architecture(const std::string& name);
// The same, or a one-line error naming `where` and listing the valid names.
const Architecture& find_architecture(const std::string& name, const std::string& where);
// "standard | gated | ..." for messages and docs; inference_only lists those a cfg.json may name.
std::string architecture_names(bool inference_only = false);

// The inference architecture a cfg.json describes with `architecture` and SAELens 5's
// `activation_fn_str`: a trainable architecture saved as another becomes that one (batchtopk is a
// JumpReLU with threshold θ); "topk" as the activation of a standard SAE is a topk SAE (SAELens 5);
// "tanh-relu" is a standard SAE's. Other combinations are one-line errors naming `where`.
std::string saved_architecture(const std::string& architecture, const std::string& activation_fn,
                               const std::string& where);

// cfg.json's architecture for a transcoder whose inference architecture is `saved_as` (SAELens:
// "transcoder" for standard, "<saved_as>_transcoder" otherwise, "skip_" before "transcoder" with
// a skip connection). Throws for an architecture that has no transcoder form.
std::string transcoder_file_architecture(const std::string& saved_as, bool skip_connection);
// The inverse: true and the inference architecture and skip flag when `name` is a transcoder's.
bool parse_transcoder_architecture(const std::string& name, std::string* saved_as,
                                   bool* skip_connection);

// Matmul FLOPs of one training step of `arch` on N tokens (the bench's count): `levels` is the
// number of reconstruction levels (matryoshka's widths; 1 otherwise).
double training_step_flops(const Architecture& arch, bool fast, int64_t N, int64_t d_in,
                           int64_t d_sae, int64_t k, int64_t levels = 1);

// Parameters of cfg.architecture's inference SAE in save order (a trainable architecture saved as
// another has that one's); throws saelab::Error for an unknown architecture.
std::vector<SaeParamSpec> sae_param_specs(const SaeConfig& cfg);

// cfg.dtype ("float32", "torch.bfloat16", ...: SAELens's DTYPE_MAP) as a torch dtype. `where` names
// the file or object for the error message.
at::ScalarType sae_scalar_type(const std::string& dtype, const std::string& where);
// The cfg.json spelling of a torch dtype ("float32", "bfloat16", ...).
std::string sae_dtype_name(at::ScalarType t);

// An SAE of cfg's architecture holding `tensors` (converted to cfg.dtype), after checking that they
// are exactly the architecture's parameters with the shapes cfg implies. Errors name `where` (the
// file), the tensor, and the expected and found shape.
std::unique_ptr<Sae> make_sae_from_tensors(const SaeConfig& cfg,
                                           std::map<std::string, at::Tensor> tensors,
                                           const std::string& where);

// GemmaScope's params.npz (a directory holding it, or the file itself) as a jumprelu SAE.
std::unique_ptr<Sae> load_gemmascope(const std::string& path);

}  // namespace saelab
