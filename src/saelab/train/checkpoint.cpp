// Checkpoint directories (see checkpoint.h).
#include "saelab/train/checkpoint.h"

#include <signal.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <functional>

#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/core/safetensors.h"
#include "saelab/sae/sae.h"

namespace saelab {
namespace fs = std::filesystem;

namespace {

// Fills tmp (emptied first) and renames it to dir. On failure tmp is removed, so a full disk
// leaves nothing half-written, and the error is rethrown.
void fill_then_rename(const std::string& tmp, const std::string& dir,
                      const std::function<void(const std::string&)>& fill) {
  std::error_code ec;
  fs::remove_all(tmp, ec);
  try {
    make_dirs(tmp);
    fill(tmp);
    rename_dir_atomic(tmp, dir);
  } catch (const Error&) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

const char* const kFinalTmp = ".final.tmp";

}  // namespace

void write_checkpoint(const std::string& dir, const Sae& sae, const at::Tensor& log10_sparsity,
                      const CheckpointData& data) {
  fs::path final_dir(dir);
  std::string tmp = (final_dir.parent_path() /
                     ("." + final_dir.filename().string() + ".tmp-" + std::to_string(::getpid())))
                        .string();
  try {
    fill_then_rename(tmp, dir, [&](const std::string& t) {
      save_sae(sae, t, log10_sparsity);
      NamedTensors named;
      for (const auto& [name, v] : data.tensors) named.emplace_back(name, v.detach().contiguous());
      save_safetensors(t + "/trainer_state.safetensors", named);
      write_json_atomic(t + "/trainer_state.json", data.state);
    });
  } catch (const Error& e) {
    // The message says which checkpoint was lost; the previous one is untouched.
    fail("cannot write checkpoint {}: {}", dir, e.what());
  }
}

void write_final_sae(const std::string& run_dir, const Sae& sae, const at::Tensor& log10_sparsity) {
  fill_then_rename(run_dir + "/" + kFinalTmp, run_dir + "/final",
                   [&](const std::string& t) { save_sae(sae, t, log10_sparsity); });
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

std::vector<std::string> checkpoints_newest_first(const std::string& run_dir) {
  std::vector<std::pair<long long, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(run_dir) / "checkpoints", ec)) {
    std::string name = e.path().filename().string();
    if (name.empty() || name.size() > 18 ||
        name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    found.emplace_back(std::stoll(name), e.path().string());
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
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

int remove_stale_temporaries(const std::string& run_dir) {
  int removed = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(run_dir) / "checkpoints", ec)) {
    const std::string name = e.path().filename().string();
    const size_t at = name.rfind(".tmp-");
    if (name.empty() || name[0] != '.' || at == std::string::npos) continue;
    const std::string pid = name.substr(at + 5);
    if (pid.empty() || pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos)
      continue;
    // A live process with that id may be writing it (another run in the same directory).
    if (::kill(static_cast<pid_t>(std::stol(pid)), 0) == 0 || errno != ESRCH) continue;
    std::error_code rm;
    removed += fs::remove_all(e.path(), rm) > 0 ? 1 : 0;
  }
  std::error_code rm;
  removed += fs::remove_all(fs::path(run_dir) / kFinalTmp, rm) > 0 ? 1 : 0;
  return removed;
}

}  // namespace saelab
