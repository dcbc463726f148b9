// Activation cache writer and manifest checks (activation_cache.h).
#include "saelab/store/activation_cache.h"

#include <torch/torch.h>

#include <filesystem>
#include <set>

#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/core/safetensors.h"
#include "saelab/store/activations_store.h"

namespace saelab {
namespace fs = std::filesystem;
namespace {

std::string shard_name(int64_t i) { return fmt::format("shard_{:05d}.safetensors", i); }

json manifest_of(const CacheInfo& info) {
  json m;
  m["format"] = "saelab-activation-cache-v1";
  m["model_name"] = info.model_name;
  m["hook_name"] = info.hook_name;
  m["hook_head_index"] = info.hook_head_index ? json(*info.hook_head_index) : json(nullptr);
  m["dataset_path"] = info.dataset_path;
  m["context_size"] = info.context_size;
  m["d_in"] = info.d_in;
  m["dtype"] = "float32";
  m["total_tokens"] = info.total_tokens;
  m["tensor"] = "activations";
  if (info.d_out > 0) {
    m["hook_name_out"] = info.hook_name_out;
    m["d_out"] = info.d_out;
  }
  m["shuffled"] = false;
  return m;
}

// Rows of a shard file, checked against d_in (and d_out: activations_out) (errors name the shard).
int64_t shard_rows(const std::string& path, int64_t d_in, int64_t d_out) {
  if (!fs::exists(path)) fail("{}: listed in manifest.json but missing", path);
  SafetensorsFile f(path);
  int64_t rows = -1;
  for (auto [name, width] : {std::pair<const char*, int64_t>{"activations", d_in},
                             std::pair<const char*, int64_t>{"activations_out", d_out}}) {
    if (width == 0) continue;
    if (!f.contains(name)) fail("{}: no tensor '{}'", path, name);
    const auto& e = f.entry(name);
    if (e.shape.size() != 2 || e.shape[1] != width || (rows >= 0 && e.shape[0] != rows))
      fail("{}: {} should be [rows, {}], got {} dimensions{}", path, name, width, e.shape.size(),
           e.shape.size() == 2 ? fmt::format(" of shape [{}, {}]", e.shape[0], e.shape[1])
                               : std::string());
    rows = e.shape[0];
  }
  return rows;
}

// A manifest's value of a key that older manifests (SAE caches) leave out.
json manifest_value(const json& m, const char* k) {
  if (m.contains(k)) return m[k];
  if (std::string(k) == "d_out") return 0;
  if (std::string(k) == "hook_name_out") return "";
  return nullptr;
}

}  // namespace

CacheResult write_activation_cache(ActivationsStore& store, const std::string& dir,
                                   const CacheInfo& info,
                                   const std::function<void(int64_t)>& progress) {
  if (info.total_tokens <= 0) fail("training_tokens: the cache needs a positive token count");
  if (store.d_in() != info.d_in)
    fail("d_in = {} but {} of model '{}' has width {}", info.d_in, info.hook_name, info.model_name,
         store.d_in());
  if (store.d_out() != info.d_out)
    fail("d_out = {} but {} of model '{}' has width {}", info.d_out, info.hook_name_out,
         info.model_name, store.d_out());
  make_dirs(dir);
  const std::string mpath = dir + "/manifest.json";
  json m = manifest_of(info);
  json shards = json::array();
  CacheResult r;
  int64_t done = 0;
  if (fs::exists(mpath)) {
    const json old = read_json_file(mpath);
    for (const char* k : {"model_name", "hook_name", "hook_head_index", "dataset_path",
                          "context_size", "d_in", "total_tokens", "hook_name_out", "d_out"})
      if ((!old.contains(k) && manifest_value(old, k).is_null()) ||
          manifest_value(old, k) != manifest_value(m, k))
        fail(
            "{}: {} = {} but this run has {} = {}; use another cached_activations_path or delete "
            "the folder",
            mpath, k, old.contains(k) ? old[k].dump() : "(missing)", k,
            manifest_value(m, k).dump());
    shards = old.value("shards", json::array());
    for (const auto& s : shards) {
      const std::string file = get_field<std::string>(s, "file", mpath);
      const int64_t rows = get_field<int64_t>(s, "rows", mpath);
      if (shard_rows(dir + "/" + file, info.d_in, info.d_out) != rows)
        fail("{}/{}: holds a different number of rows than manifest.json lists ({})", dir, file,
             rows);
      done += rows;
    }
    r.resumed_shards = int64_t(shards.size());
    if (old.value("complete", false)) {
      r.tokens = done;
      r.shards = int64_t(shards.size());
      if (progress) progress(done);
      return r;
    }
    if (!shards.empty())
      store.skip_windows(get_field<int64_t>(shards.back(), "windows_end", mpath));
  }
  if (progress) progress(done);
  std::vector<at::Tensor> parts;
  int64_t in_shard = 0;
  auto flush = [&](int64_t windows_end) {
    at::Tensor rows = torch::cat(parts, 0).contiguous();
    parts.clear();
    const std::string file = shard_name(int64_t(shards.size()));
    if (info.d_out > 0)
      save_safetensors(dir + "/" + file,
                       {{"activations", rows.narrow(1, 0, info.d_in).contiguous()},
                        {"activations_out", rows.narrow(1, info.d_in, info.d_out).contiguous()}},
                       {{"format", "pt"}});
    else
      save_safetensors(dir + "/" + file, {{"activations", rows}}, {{"format", "pt"}});
    shards.push_back(json{{"file", file}, {"rows", rows.size(0)}, {"windows_end", windows_end}});
    m["shards"] = shards;
    m["tokens"] = done;
    m["complete"] = done >= info.total_tokens;
    write_json_atomic(mpath, m);
    in_shard = 0;
  };
  while (done < info.total_tokens) {
    ActivationChunk c = store.next_chunk();
    at::Tensor rows = c.rows;
    if (rows.size(0) > info.total_tokens - done) rows = rows.slice(0, 0, info.total_tokens - done);
    parts.push_back(rows);
    in_shard += rows.size(0);
    done += rows.size(0);
    if (in_shard >= info.shard_tokens || done >= info.total_tokens) flush(c.windows_end);
    if (progress) progress(done);
  }
  if (!fs::exists(mpath) || !read_json_file(mpath).value("complete", false)) {
    m["shards"] = shards;
    m["tokens"] = done;
    m["complete"] = true;
    write_json_atomic(mpath, m);
  }
  r.tokens = done;
  r.shards = int64_t(shards.size());
  return r;
}

void check_activation_cache(const std::string& dir, int64_t d_in, const std::string& hook_name,
                            int64_t d_out, const std::string& hook_name_out) {
  const std::string mpath = dir + "/manifest.json";
  if (!fs::is_directory(dir) || !fs::exists(mpath)) return;
  const json m = read_json_file(mpath);
  if (!m.value("complete", false))
    fail(
        "{}: the cache is incomplete ({} of {} tokens); run `saelab cache` again with the same "
        "config to finish it",
        mpath, m.value("tokens", int64_t(0)), m.value("total_tokens", int64_t(0)));
  if (m.value("d_in", int64_t(0)) != d_in)
    fail("{}: d_in = {} but the run's d_in = {}", mpath, m.value("d_in", int64_t(0)), d_in);
  if (m.value("hook_name", std::string()) != hook_name)
    fail("{}: cached from hook {} but the run's hook_name = {}", mpath,
         m.value("hook_name", std::string()), hook_name);
  if (manifest_value(m, "d_out") != d_out || manifest_value(m, "hook_name_out") != hook_name_out)
    fail(
        "{}: cached with hook_name_out = {} (d_out = {}) but the run has hook_name_out = {} "
        "(d_out = {})",
        mpath, manifest_value(m, "hook_name_out").dump(), manifest_value(m, "d_out").dump(),
        json(hook_name_out).dump(), d_out);
  std::set<std::string> listed;
  int64_t total = 0;
  for (const auto& s : m.value("shards", json::array())) {
    const std::string file = get_field<std::string>(s, "file", mpath);
    const int64_t rows = get_field<int64_t>(s, "rows", mpath);
    if (shard_rows(dir + "/" + file, d_in, d_out) != rows)
      fail("{}/{}: holds a different number of rows than manifest.json lists ({})", dir, file,
           rows);
    listed.insert(file);
    total += rows;
  }
  if (total != m.value("tokens", total))
    fail("{}: the shards hold {} rows but the manifest says tokens = {}", mpath, total,
         m.value("tokens", total));
  for (auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() == ".safetensors" && !listed.count(name))
      fail("{}/{}: a shard not listed in manifest.json", dir, name);
  }
}

}  // namespace saelab
