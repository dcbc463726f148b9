// Checkpoint directories (see checkpoint.h).
#include "saelab/train/checkpoint.h"

#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>

#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/core/safetensors.h"
#include "saelab/sae/sae.h"

namespace saelab {
namespace fs = std::filesystem;

void write_checkpoint(const std::string& dir, const Sae& sae, const at::Tensor& log10_sparsity,
                      const CheckpointData& data) {
  fs::path final_dir(dir);
  std::string tmp = (final_dir.parent_path() /
                     ("." + final_dir.filename().string() + ".tmp-" + std::to_string(::getpid())))
                        .string();
  std::error_code ec;
  fs::remove_all(tmp, ec);
  make_dirs(tmp);
  save_sae(sae, tmp, log10_sparsity);
  NamedTensors named;
  for (const auto& [name, t] : data.tensors) named.emplace_back(name, t.detach().contiguous());
  save_safetensors(tmp + "/trainer_state.safetensors", named);
  write_json_atomic(tmp + "/trainer_state.json", data.state);
  rename_dir_atomic(tmp, dir);
}

CheckpointData read_checkpoint(const std::string& dir) {
  std::string js = dir + "/trainer_state.json", st = dir + "/trainer_state.safetensors";
  if (!path_exists(js) || !path_exists(st))
    fail("{}: expected a checkpoint with trainer_state.json and trainer_state.safetensors", dir);
  CheckpointData d;
  d.state = read_json_file(js);
  d.tensors = load_safetensors(st);
  return d;
}

std::string latest_checkpoint(const std::string& run_dir) {
  fs::path root = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return "";
  std::string best;
  long long best_tokens = -1;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (!fs::exists(e.path() / "trainer_state.json")) continue;
    long long tokens = std::stoll(name);
    if (tokens > best_tokens) {
      best_tokens = tokens;
      best = e.path().string();
    }
  }
  return best;
}

}  // namespace saelab
