// Model-name resolution: paths, TransformerLens aliases and the Hugging Face hub cache layout
// (models--ORG--NAME/{refs/main, snapshots/<rev>/}).
#include "saelab/model/hf_cache.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <utility>

#include "saelab/core/error.h"
#include "saelab/core/io.h"

namespace fs = std::filesystem;

namespace saelab {
namespace {

// TransformerLens's MODEL_ALIASES (supported_models.py) for the families saelab runs.
const std::vector<std::pair<std::string, std::vector<std::string>>>& alias_table() {
  static const std::vector<std::pair<std::string, std::vector<std::string>>> t = {
      {"gpt2", {"gpt2-small"}},
      {"gpt2-medium", {}},
      {"gpt2-large", {}},
      {"gpt2-xl", {}},
      {"distilgpt2", {"distillgpt2", "distill-gpt2", "distil-gpt2", "gpt2-xs"}},
      {"roneneldan/TinyStories-1M", {"tiny-stories-1M"}},
      {"roneneldan/TinyStories-3M", {"tiny-stories-3M"}},
      {"roneneldan/TinyStories-8M", {"tiny-stories-8M"}},
      {"roneneldan/TinyStories-28M", {"tiny-stories-28M"}},
      {"roneneldan/TinyStories-33M", {"tiny-stories-33M"}},
      {"roneneldan/TinyStories-1Layer-21M", {"tiny-stories-1L-21M"}},
      {"roneneldan/TinyStories-2Layers-33M", {"tiny-stories-2L-33M"}},
      {"EleutherAI/gpt-neo-125M", {"gpt-neo-125M", "gpt-neo-small", "neo-small", "neo"}},
      {"NeelNanda/Attn-Only-2L512W-Shortformer-6B-big-lr",
       {"attn-only-2l-demo", "attn-only-2l-shortformer-6b-big-lr", "attn-only-2l-induction-demo",
        "attn-only-demo"}},
      {"Baidicoot/Othello-GPT-Transformer-Lens", {"othello-gpt"}},
      {"google/gemma-2-2b", {"gemma-2-2b"}},
      {"google/gemma-2-2b-it", {"gemma-2-2b-it"}},
      {"google/gemma-2-9b", {"gemma-2-9b"}},
      {"google/gemma-2-9b-it", {"gemma-2-9b-it"}},
      {"google/gemma-2-27b", {"gemma-2-27b"}},
      {"google/gemma-2-27b-it", {"gemma-2-27b-it"}},
      {"meta-llama/Llama-2-7b-hf", {"Llama-2-7b"}},
      {"meta-llama/Llama-2-7b-chat-hf", {"Llama-2-7b-chat"}},
      {"meta-llama/Llama-2-13b-hf", {"Llama-2-13b"}},
      {"meta-llama/Llama-3.2-1B", {}},
      {"meta-llama/Llama-3.2-1B-Instruct", {}},
      {"meta-llama/Llama-3.2-3B", {}},
      {"meta-llama/Llama-3.1-8B", {}},
      {"meta-llama/Meta-Llama-3-8B", {}},
      {"mistralai/Mistral-7B-v0.1", {"mistral-7b"}},
      {"mistralai/Mistral-7B-Instruct-v0.1", {"mistral-7b-instruct"}},
      {"Qwen/Qwen2-0.5B", {"qwen2-0.5b"}},
      {"Qwen/Qwen2-0.5B-Instruct", {"qwen2-0.5b-instruct"}},
      {"Qwen/Qwen2-1.5B", {"qwen2-1.5b"}},
      {"Qwen/Qwen2-7B", {"qwen2-7b"}},
      {"Qwen/Qwen2.5-0.5B", {"qwen2.5-0.5b"}},
      {"Qwen/Qwen2.5-0.5B-Instruct", {"qwen2.5-0.5b-instruct"}},
      {"Qwen/Qwen2.5-1.5B", {"qwen2.5-1.5b"}},
      {"Qwen/Qwen2.5-3B", {"qwen2.5-3b"}},
      {"Qwen/Qwen2.5-7B", {"qwen2.5-7b"}},
  };
  return t;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

std::string cache_folder_name(const std::string& repo_id) {
  std::string f = "models--";
  for (char c : repo_id) {
    if (c == '/')
      f += "--";
    else
      f += c;
  }
  return f;
}

// A TL-native checkpoint in a folder: TL picks the file ending in final.pth; otherwise the only
// .pth.
std::string find_pth(const std::string& dir) {
  std::vector<std::string> pths;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".pth") pths.push_back(e.path().string());
  std::sort(pths.begin(), pths.end());
  for (auto& p : pths)
    if (p.size() >= 9 && p.compare(p.size() - 9, 9, "final.pth") == 0) return p;
  if (pths.size() == 1) return pths[0];
  return "";
}

bool has_hf_weights(const std::string& dir) {
  for (const char* f : {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                        "pytorch_model.bin.index.json"})
    if (fs::exists(fs::path(dir) / f)) return true;
  return false;
}

ModelLocation location_of_dir(const std::string& dir, const std::string& repo_id) {
  ModelLocation loc{dir, "", repo_id};
  if (!has_hf_weights(dir)) loc.pth_file = find_pth(dir);
  return loc;
}

}  // namespace

std::string hf_hub_cache_dir() {
  if (const char* c = std::getenv("HF_HUB_CACHE"); c && *c) return c;
  if (const char* h = std::getenv("HF_HOME"); h && *h) return (fs::path(h) / "hub").string();
  const char* home = std::getenv("HOME");
  return (fs::path(home && *home ? home : "/root") / ".cache" / "huggingface" / "hub").string();
}

std::optional<std::string> tl_official_model_name(const std::string& name) {
  const std::string l = lower(name);
  for (auto& [official, aliases] : alias_table()) {
    if (lower(official) == l) return official;
    for (auto& a : aliases)
      if (lower(a) == l) return official;
  }
  return std::nullopt;
}

std::optional<std::string> find_hf_snapshot(const std::string& repo_id,
                                            const std::string& cache_dir) {
  const fs::path repo = fs::path(cache_dir) / cache_folder_name(repo_id);
  const fs::path snaps = repo / "snapshots";
  std::error_code ec;
  if (!fs::is_directory(snaps, ec)) return std::nullopt;
  if (fs::exists(repo / "refs" / "main")) {
    std::string rev = trim(read_file((repo / "refs" / "main").string()));
    if (!rev.empty() && fs::is_directory(snaps / rev, ec)) return (snaps / rev).string();
  }
  // No usable refs/main (a cache filled by hand or by `--revision`): take the newest snapshot.
  std::optional<std::string> best;
  fs::file_time_type best_t{};
  for (auto& e : fs::directory_iterator(snaps, ec)) {
    if (!e.is_directory()) continue;
    auto t = fs::last_write_time(e.path(), ec);
    if (!best || t > best_t) {
      best = e.path().string();
      best_t = t;
    }
  }
  return best;
}

ModelLocation resolve_model_location(const std::string& model_name) {
  if (model_name.empty())
    fail("--model: expected a model name, repo id or path, got an empty string");
  std::error_code ec;
  if (fs::exists(model_name, ec)) {
    if (fs::is_directory(model_name, ec)) {
      ModelLocation loc = location_of_dir(model_name, "");
      if (loc.pth_file.empty() && !fs::exists(fs::path(model_name) / "config.json"))
        fail(
            "{}: expected a Hugging Face model folder (config.json with model.safetensors, "
            "model.safetensors.index.json or pytorch_model.bin) or a folder with a TransformerLens "
            ".pth state dict",
            model_name);
      return loc;
    }
    if (fs::path(model_name).extension() == ".pth" || fs::path(model_name).extension() == ".pt")
      return {fs::path(model_name).parent_path().string(), model_name, ""};
    fail("{}: expected a model folder or a .pth state dict", model_name);
  }
  const std::optional<std::string> official = tl_official_model_name(model_name);
  const std::string repo_id = official ? *official : model_name;
  const std::string cache = hf_hub_cache_dir();
  if (auto snap = find_hf_snapshot(repo_id, cache)) return location_of_dir(*snap, repo_id);
  const bool looks_like_repo = official || model_name.find('/') != std::string::npos ||
                               model_name.find_first_of(" \\") == std::string::npos;
  if (!looks_like_repo) fail("{}: no such file, alias or Hugging Face repo id", model_name);
  fail(
      "model '{}'{}: not found in the Hugging Face cache (looked in {}); download it with "
      "`huggingface-cli download {}` (or set HF_HUB_CACHE / HF_HOME)",
      model_name, official && *official != model_name ? " (= " + *official + ")" : std::string(),
      (fs::path(cache) / cache_folder_name(repo_id)).string(), repo_id);
}

}  // namespace saelab
