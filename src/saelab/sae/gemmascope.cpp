// GemmaScope SAEs (Lieberum et al. 2024): a params.npz with W_enc [d_in, d_sae], W_dec, b_enc,
// b_dec and threshold, and no cfg.json. SAELens's gemma_2_sae_huggingface_loader
// (sae_lens/loading/pretrained_sae_loaders.py) loads them as jumprelu with
// apply_b_dec_to_input = false, float32, renaming lower-case "w_" keys to "W_"; saelab does the
// same. The model, hook and width SAELens derives from the Hugging Face repo name are unknown here
// and left empty.
#include <torch/torch.h>

#include <filesystem>

#include "saelab/core/error.h"
#include "saelab/core/npy.h"
#include "saelab/sae/registry.h"
#include "saelab/sae/sae.h"

namespace saelab {

std::unique_ptr<Sae> load_gemmascope(const std::string& path) {
  std::error_code ec;
  const std::string file = std::filesystem::is_directory(path, ec) ? path + "/params.npz" : path;
  std::map<std::string, at::Tensor> tensors;
  for (auto& [key, t] : read_npz(file)) {
    std::string name = key.rfind("w_", 0) == 0 ? "W_" + key.substr(2) : key;
    if (tensors.count(name)) fail("{}: both '{}' and its lower-case form are present", file, name);
    tensors[name] = t;
  }
  auto w = tensors.find("W_enc");
  if (w == tensors.end()) fail("{}: missing array 'W_enc' (GemmaScope params.npz)", file);
  if (w->second.dim() != 2)
    fail("{}: array 'W_enc' must be 2-D [d_in, d_sae], got {} dimensions", file, w->second.dim());
  SaeConfig cfg;
  cfg.architecture = "jumprelu";
  cfg.d_in = w->second.size(0);
  cfg.d_sae = w->second.size(1);
  cfg.dtype = "float32";
  cfg.apply_b_dec_to_input = false;
  cfg.normalize_activations = "none";
  if (cfg.d_in <= 0 || cfg.d_sae <= 0)
    fail("{}: array 'W_enc' has an empty dimension ({} x {})", file, cfg.d_in, cfg.d_sae);
  return make_sae_from_tensors(cfg, std::move(tensors), file);
}

}  // namespace saelab
