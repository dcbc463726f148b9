// Where a model named by the user lives on disk: a path, a Hugging Face repo id or a
// TransformerLens alias, looked up in the local Hugging Face hub cache. No
// network: a model that is not in the cache is an error naming the folder looked in and the
// `huggingface-cli download` command that fetches it.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace saelab {

// $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.
std::string hf_hub_cache_dir();

// TransformerLens alias -> Hugging Face repo id (case-insensitive, as TL's
// get_official_model_name), or nullopt when `name` is no known alias. Official repo ids map to
// themselves.
std::optional<std::string> tl_official_model_name(const std::string& name);

// models--ORG--NAME/snapshots/<rev> for a repo id in `cache_dir`: the rev named by refs/main when
// present, else the only (or newest) snapshot. nullopt when the repo is not cached.
std::optional<std::string> find_hf_snapshot(const std::string& repo_id,
                                            const std::string& cache_dir);

// A resolved model: the folder with its files, and the .pth state dict for TL-native models.
struct ModelLocation {
  std::string dir;       // folder holding config.json / weights / tokenizer files
  std::string pth_file;  // non-empty for a TL-native .pth state dict
  std::string repo_id;   // the HF repo id when resolved through an alias or repo id, else ""
};

// Resolves `model_name` as (a) a path to a folder or a .pth file, (b) a TL alias, (c) a repo id
// in the hub cache. Throws saelab::Error (one line) when nothing is found.
ModelLocation resolve_model_location(const std::string& model_name);

}  // namespace saelab
