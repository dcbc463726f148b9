// Dataset resolution in the local Hugging Face caches (dataset_resolve.h).
#include "saelab/data/dataset_resolve.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "saelab/core/error.h"

namespace saelab {
namespace fs = std::filesystem;

namespace {

std::string env_or(const char* var, const std::string& fallback) {
  const char* v = std::getenv(var);
  return v && *v ? std::string(v) : fallback;
}

std::string hf_home() {
  const char* home = std::getenv("HOME");
  return env_or("HF_HOME", std::string(home ? home : "") + "/.cache/huggingface");
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool ends_with(const std::string& s, const std::string& x) {
  return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

// The split a path names, or "" when it names none.
std::string split_of(const std::string& rel) {
  static const std::vector<std::pair<std::string, std::vector<std::string>>> kWords = {
      {"train", {"train", "training"}},
      {"test", {"test", "testing", "eval", "evaluation"}},
      {"validation", {"validation", "valid", "val", "dev"}}};
  std::string word;
  std::vector<std::string> words;
  for (char c : lower(rel) + "/") {
    if (c == '/' || c == '-' || c == '.' || c == '_' || c == ' ' || (c >= '0' && c <= '9')) {
      if (!word.empty()) words.push_back(word);
      word.clear();
    } else {
      word += c;
    }
  }
  for (const auto& w : words)
    for (const auto& [split, names] : kWords)
      if (std::find(names.begin(), names.end(), w) != names.end()) return split;
  return "";
}

std::vector<std::string> token_files_below(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(
           dir, fs::directory_options::follow_directory_symlink, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    // Hidden files (.gitattributes, .cache) and the `datasets` library's map/filter caches.
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file() && is_token_file_name(name) && name.rfind("cache-", 0) != 0)
      out.push_back(it->path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string folder_name(const std::string& prefix, const std::string& id, const char* sep) {
  std::string f = prefix;
  for (char c : id) f += c == '/' ? std::string(sep) : std::string(1, c);
  return f;
}

std::string read_first_line(const fs::path& p) {
  std::ifstream in(p);
  std::string s;
  std::getline(in, s);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

// The snapshot folder of `revision` (a commit hash or a ref such as "main") in a hub-cache repo.
std::optional<fs::path> hub_snapshot(const fs::path& repo, const std::string& revision,
                                     const std::string& id) {
  const fs::path snaps = repo / "snapshots";
  if (!fs::is_directory(snaps)) return std::nullopt;
  const std::string rev = revision.empty() ? "main" : revision;
  if (fs::is_directory(snaps / rev)) return snaps / rev;
  if (fs::exists(repo / "refs" / rev)) {
    const std::string hash = read_first_line(repo / "refs" / rev);
    if (!hash.empty() && fs::is_directory(snaps / hash)) return snaps / hash;
  }
  std::vector<fs::path> all;
  for (auto& e : fs::directory_iterator(snaps))
    if (e.is_directory()) all.push_back(e.path());
  if (!revision.empty()) {
    std::string have;
    for (auto& p : all) have += (have.empty() ? "" : ", ") + p.filename().string();
    fail("dataset '{}': revision '{}' is not in the hub cache {} (snapshots there: {})", id,
         revision, repo.string(), have.empty() ? "none" : have);
  }
  // Without refs/main, the newest snapshot (as the hub client falls back offline).
  std::optional<fs::path> best;
  for (auto& p : all)
    if (!best || fs::last_write_time(p) > fs::last_write_time(*best)) best = p;
  return best;
}

// The `datasets` cache: <org>___<name>/<config>/<version>/<hash>/<builder>-<split>[-NNNNN-of-
// NNNNN].arrow. The newest folder holding the split's Arrow files wins.
std::optional<ResolvedDataset> datasets_cache(const std::string& id, const std::string& split) {
  const fs::path root = fs::path(hf_datasets_cache_dir()) / folder_name("", id, "___");
  if (!fs::is_directory(root)) return std::nullopt;
  std::optional<fs::path> best;
  std::vector<std::string> best_files;
  std::vector<std::string> all = token_files_below(root);
  std::vector<std::string> dirs;
  for (auto& f : all) {
    const fs::path p(f);
    if (p.extension() != ".arrow") continue;
    if (ends_with(p.parent_path().string(), ".incomplete")) continue;
    dirs.push_back(p.parent_path().string());
  }
  std::sort(dirs.begin(), dirs.end());
  dirs.erase(std::unique(dirs.begin(), dirs.end()), dirs.end());
  for (auto& d : dirs) {
    std::vector<std::string> files;
    for (auto& f : all) {
      const fs::path p(f);
      if (p.parent_path() != d || p.extension() != ".arrow") continue;
      // <builder>-<split>.arrow or <builder>-<split>-00000-of-00002.arrow
      const std::string stem = p.stem().string();
      const std::string tag = "-" + split;
      const size_t at = stem.rfind(tag);
      if (at == std::string::npos) continue;
      const std::string rest = stem.substr(at + tag.size());
      if (!rest.empty() && rest.find("-of-") == std::string::npos) continue;
      files.push_back(f);
    }
    if (files.empty()) continue;
    if (!best || fs::last_write_time(d) > fs::last_write_time(*best)) {
      best = d;
      best_files = files;
    }
  }
  if (!best) {
    if (!all.empty())
      fail("dataset '{}': the datasets cache {} holds no Arrow files of split '{}'", id,
           root.string(), split);
    return std::nullopt;
  }
  return ResolvedDataset{best_files, best->string()};
}

}  // namespace

std::string hf_dataset_hub_cache_dir() { return env_or("HF_HUB_CACHE", hf_home() + "/hub"); }

std::string hf_datasets_cache_dir() { return env_or("HF_DATASETS_CACHE", hf_home() + "/datasets"); }

bool is_token_file_name(const std::string& path) {
  std::string p = lower(fs::path(path).filename().string());
  for (const char* z : {".gz", ".zst"})
    if (ends_with(p, z))
      return ends_with(p, std::string(".jsonl") + z) || ends_with(p, std::string(".txt") + z);
  for (const char* e : {".jsonl", ".txt", ".npy", ".bin", ".parquet", ".arrow"})
    if (ends_with(p, e)) return true;
  return false;
}

std::vector<std::string> select_split(const std::vector<std::string>& files,
                                      const std::string& root, const std::string& split) {
  bool any_named = false;
  std::vector<std::string> out;
  for (const auto& f : files) {
    const std::string rel = fs::path(f).lexically_relative(root).string();
    const std::string s = split_of(rel.empty() ? f : rel);
    any_named |= !s.empty();
    if (s == split) out.push_back(f);
  }
  if (!any_named && split == "train") out = files;
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<ResolvedDataset> resolve_hf_dataset(const std::string& id,
                                                  const std::string& revision,
                                                  const std::string& split) {
  const fs::path repo = fs::path(hf_dataset_hub_cache_dir()) / folder_name("datasets--", id, "--");
  if (auto snap = hub_snapshot(repo, revision, id)) {
    const std::vector<std::string> all = token_files_below(*snap);
    if (all.empty())
      fail(
          "dataset '{}': the snapshot {} holds no data files (.parquet, .arrow, .jsonl[.gz|.zst], "
          ".txt, .npy, .bin)",
          id, snap->string());
    std::vector<std::string> files = select_split(all, snap->string(), split);
    if (files.empty())
      fail("dataset '{}': no files of split '{}' in {} (dataset_split names the split)", id, split,
           snap->string());
    return ResolvedDataset{files, snap->string()};
  }
  if (!revision.empty() && revision != "main" && fs::is_directory(repo))
    fail("dataset '{}': revision '{}' is not in the hub cache {}", id, revision, repo.string());
  return datasets_cache(id, split);
}

}  // namespace saelab
