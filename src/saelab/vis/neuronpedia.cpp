// Neuronpedia batch-upload bodies (neuronpedia.h) from the --json contract.
#include "saelab/vis/neuronpedia.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "saelab/core/error.h"
#include "saelab/core/io.h"

namespace saelab::vis {
namespace {

// f[k] by reference, or an empty array when absent (json::value would copy the whole list).
const json& list_at(const json& f, const char* k) {
  static const json empty = json::array();
  return f.contains(k) ? f.at(k) : empty;
}

constexpr size_t kFeaturesPerBatch = 128;  // the endpoint's limit
constexpr size_t kMaxLogits = 20;
constexpr size_t kMaxTokens = 1024;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

json logits(const json& list, const std::function<std::string(int64_t)>& token) {
  json out = json::array();
  for (size_t k = 0; k < list.size() && k < kMaxLogits; ++k)
    out.push_back({{"token", token(list[k]["token_id"].get<int64_t>())},
                   {"value", list[k]["value"].get<double>()}});
  return out;
}

// Values at excluded tokens (BOS/EOS/PAD, never counted) are written as 0: Neuronpedia takes the
// max of "values" as the example's activation, and a large act at BOS would take its place.
json activation(const json& e, const std::function<std::string(int64_t)>& token,
                const std::set<int64_t>& excluded) {
  json tokens = json::array(), values = json::array();
  const auto& ids = e.at("token_ids");
  const auto& acts = e.at("acts");
  for (size_t k = 0; k < ids.size() && k < kMaxTokens; ++k) {
    const int64_t id = ids[k].get<int64_t>();
    tokens.push_back(token(id));
    values.push_back(excluded.count(id) ? 0.0 : acts[k].get<double>());
  }
  return {{"tokens", tokens}, {"values", values}};
}

}  // namespace

NeuronpediaExport write_neuronpedia(const json& stats, const std::string& out_dir,
                                    const std::string& model_id, const std::string& source,
                                    const std::function<std::string(int64_t)>& token) {
  if (model_id.empty())
    fail("--neuronpedia-model-id: expected Neuronpedia's model id (e.g. gpt2-small)");
  if (source.empty()) fail("--neuronpedia-source: expected the source id (e.g. 6-res-jb)");
  make_dirs(out_dir);
  std::set<int64_t> excluded;
  for (const auto& id : stats.value("excluded_token_ids", json::array()))
    excluded.insert(id.get<int64_t>());
  NeuronpediaExport ex;
  json batch = json::array();
  auto flush = [&] {
    if (batch.empty()) return;
    const std::string path = fmt::format("{}/batch-{:04d}.json", out_dir, ex.files.size());
    json body = {{"modelId", lower(model_id)}, {"source", lower(source)}, {"features", batch}};
    write_file_atomic(path, body.dump());
    ex.files.push_back(path);
    batch = json::array();
  };
  for (const auto& f : stats.at("features")) {
    const int64_t fires = f.value("fires", int64_t(0));
    json acts = json::array();
    for (const auto& e : list_at(f, "top_examples")) acts.push_back(activation(e, token, excluded));
    for (const auto& b : list_at(f, "quantile_groups"))
      for (const auto& e : b.at("examples")) {
        json a = activation(e, token, excluded);
        a["quantileMin"] = b.at("lo").get<double>();
        a["quantileMax"] = b.at("hi").get<double>();
        a["quantileFraction"] =
            fires > 0 ? double(b.at("count").get<int64_t>()) / double(fires) : 0.0;
        acts.push_back(a);
      }
    if (acts.empty()) {
      ++ex.n_skipped;
      continue;
    }
    json feat = {{"index", f.at("index")}, {"density", f.at("density")}, {"activations", acts}};
    if (f.contains("top_logits")) feat["topLogits"] = logits(f["top_logits"], token);
    if (f.contains("bottom_logits")) feat["bottomLogits"] = logits(f["bottom_logits"], token);
    batch.push_back(feat);
    ++ex.n_features;
    if (batch.size() == kFeaturesPerBatch) flush();
  }
  flush();
  return ex;
}

}  // namespace saelab::vis
