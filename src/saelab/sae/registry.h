// The architectures behind make_sae: which parameters each one has (names and shapes, as SAELens
// saves them) and the factory for each. The list lives in registry.cpp and names each factory
// explicitly: self-registering static objects would be dropped by the linker from a static library.
#pragma once
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "saelab/sae/config.h"

namespace saelab {

class Sae;

struct SaeParamSpec {
  std::string name;            // as in sae_weights.safetensors
  std::vector<int64_t> shape;  // implied by d_in / d_sae
};

// The architecture names saelab knows ("standard", "gated", "topk", "jumprelu"). "batchtopk" is not
// one of them: SaeConfig::from_json maps it to "jumprelu" (how SAELens saves a batchtopk SAE).
const std::vector<std::string>& sae_architectures();
bool is_sae_architecture(const std::string& name);

// Parameters of cfg.architecture in save order ("batchtopk" has jumprelu's); throws saelab::Error
// for an unknown architecture.
std::vector<SaeParamSpec> sae_param_specs(const SaeConfig& cfg);

// cfg.dtype ("float32", "torch.bfloat16", ...: SAELens's DTYPE_MAP) as a torch dtype. `where` names
// the file or object for the error message.
at::ScalarType sae_scalar_type(const std::string& dtype, const std::string& where);
// The cfg.json spelling of a torch dtype ("float32", "bfloat16", ...).
std::string sae_dtype_name(at::ScalarType t);

// Factories, one per architecture file. Each checks the config fields its architecture needs.
std::unique_ptr<Sae> make_standard_sae(const SaeConfig& cfg);
std::unique_ptr<Sae> make_topk_sae(const SaeConfig& cfg);
std::unique_ptr<Sae> make_jumprelu_sae(const SaeConfig& cfg);
std::unique_ptr<Sae> make_gated_sae(const SaeConfig& cfg);

// An SAE of cfg's architecture holding `tensors` (converted to cfg.dtype), after checking that they
// are exactly the architecture's parameters with the shapes cfg implies. Errors name `where` (the
// file), the tensor, and the expected and found shape.
std::unique_ptr<Sae> make_sae_from_tensors(const SaeConfig& cfg,
                                           std::map<std::string, at::Tensor> tensors,
                                           const std::string& where);

// GemmaScope's params.npz (a directory holding it, or the file itself) as a jumprelu SAE.
std::unique_ptr<Sae> load_gemmascope(const std::string& path);

}  // namespace saelab
