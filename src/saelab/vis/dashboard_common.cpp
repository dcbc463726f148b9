// Loading and checking for `saelab vis`, token strings, and the weight-based record parts
// (dashboard_common.h).
#include "saelab/vis/dashboard_common.h"

#include <torch/torch.h>

#include "saelab/core/error.h"
#include "saelab/data/tokenizer.h"
#include "saelab/model/transformer.h"
#include "saelab/sae/sae.h"

namespace saelab::vis {

VisModel::VisModel() = default;
VisModel::VisModel(VisModel&&) noexcept = default;
VisModel::~VisModel() = default;

VisModel load_vis_model(const VisOptions& o) {
  VisModel m;
  m.sae = load_sae(o.sae_dir);
  const SaeConfig& sc = m.sae->cfg();
  if (sc.hook_name.empty())
    fail("{}/cfg.json: hook_name is empty; vis needs the hook the SAE reads", o.sae_dir);
  m.hook = sc.hook_name;
  m.head = sc.hook_head_index;
  if (o.device != "cpu" && o.device.rfind("cuda", 0) != 0)
    fail("--device: expected cpu or cuda[:N], got '{}'", o.device);
  const at::Device device(o.device);
  m.lm = load_model(o.model);
  m.lm.model->check_hook_name(m.hook);
  m.lm.model->to(device);
  for (auto& kv : m.sae->params()) kv.second = kv.second.to(device);

  // The hook's width against d_in before any data is read.
  auto shape = m.lm.model->hook_shape(m.hook, 1, 1);
  int64_t width = shape.back();
  if (shape.size() == 4 && !m.head) width = shape[2] * shape[3];
  if (shape.size() != 4 && m.head)
    fail("{}/cfg.json: hook_head_index is set but hook '{}' has no head axis", o.sae_dir, m.hook);
  if (width != sc.d_in)
    fail("SAE {} has d_in = {} but hook '{}' of model '{}' has width {}", o.sae_dir, sc.d_in,
         m.hook, o.model, width);
  try {
    m.tok = load_tokenizer(m.lm.dir);
  } catch (const Error&) {
    // Pretokenized data and Othello need no tokenizer; a text prompt reports its absence.
  }
  m.othello = o.dataset == "othello" || m.lm.cfg.family == "othello_mingpt";
  return m;
}

std::string othello_token_name(int64_t id) {
  if (id == 0) return "pass";
  if (id < 1 || id > 60) return std::to_string(id);
  int square = -1;
  for (int s = 0, t = 0; s < 64; ++s) {
    if (s == 27 || s == 28 || s == 35 || s == 36) continue;  // the four centre squares
    if (++t == id) {
      square = s;
      break;
    }
  }
  return std::string(1, char('A' + square / 8)) + char('0' + square % 8);
}

std::string token_string(const VisModel& m, int64_t id) {
  if (m.othello) return othello_token_name(id);
  if (m.tok && id >= 0 && id < m.tok->vocab_size()) return to_str_tokens(*m.tok, {id})[0];
  return std::to_string(id);
}

json example_json(const FeatureExample& e) {
  json acts = json::array();
  for (float a : e.acts) acts.push_back(double(a));
  return {{"prompt", e.prompt},
          {"position", e.position},
          {"act", e.act},
          {"context_start", e.context_start},
          {"token_ids", e.token_ids},
          {"acts", acts}};
}

void add_weight_parts(const VisModel& m, const std::vector<int64_t>& features, const VisOptions& o,
                      std::vector<json>& records) {
  const Transformer& model = *m.lm.model;
  auto dirs = residual_directions(model, *m.sae, m.hook, m.head, features);
  if (dirs && model.has_weight("unembed.W_U")) {
    auto eff = logit_effects(*dirs, model.weight("unembed.W_U"), o.n_logits, 50);
    for (size_t i = 0; i < features.size(); ++i) {
      auto list = [&](const std::vector<IndexValue>& v) {
        json a = json::array();
        for (const auto& e : v)
          a.push_back(
              {{"token_id", e.index}, {"token", token_string(m, e.index)}, {"value", e.value}});
        return a;
      };
      records[i]["top_logits"] = list(eff[i].top);
      records[i]["bottom_logits"] = list(eff[i].bottom);
      json edges = json::array();
      const int64_t nb = int64_t(eff[i].hist_counts.size());
      for (int64_t b = 0; b <= nb; ++b)
        edges.push_back(eff[i].hist_lo +
                        (eff[i].hist_hi - eff[i].hist_lo) * double(b) / double(nb));
      records[i]["logit_histogram"] = {{"bin_edges", edges}, {"counts", eff[i].hist_counts}};
    }
  } else {
    for (auto& r : records) {
      r["top_logits"] = json::array();
      r["bottom_logits"] = json::array();
    }
  }
  const auto nbrs = decoder_neighbours(*m.sae, features, o.n_neighbours);
  const auto neurons = top_decoder_entries(*m.sae, features, 5);
  for (size_t i = 0; i < features.size(); ++i) {
    json a = json::array(), b = json::array();
    for (const auto& e : nbrs[i]) a.push_back({{"index", e.index}, {"cosine", e.value}});
    for (const auto& e : neurons[i]) b.push_back({{"index", e.index}, {"value", e.value}});
    records[i]["neighbours"] = a;
    records[i]["neurons"] = b;
  }
}

}  // namespace saelab::vis
