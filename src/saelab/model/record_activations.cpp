// Recording activations at hooks (record_activations.h).
#include "saelab/model/record_activations.h"

#include <torch/torch.h>

#include <map>

#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/model/transformer.h"

namespace saelab {

at::Tensor read_token_rows(const std::string& path, int64_t d_vocab) {
  const json j = read_json_file(path);
  if (!j.is_array() || j.empty()) fail("{}: expected a non-empty list of token-id lists", path);
  const size_t len = j[0].is_array() ? j[0].size() : 0;
  if (len == 0) fail("{}: row 0: expected a non-empty list of token ids", path);
  std::vector<int64_t> flat;
  flat.reserve(j.size() * len);
  for (size_t r = 0; r < j.size(); ++r) {
    if (!j[r].is_array())
      fail("{}: row {}: expected a list of token ids, got {}", path, r, j[r].type_name());
    if (j[r].size() != len)
      fail("{}: row {} has {} tokens, row 0 has {}; every row must have the same length", path, r,
           j[r].size(), len);
    for (size_t p = 0; p < len; ++p) {
      const json& v = j[r][p];
      if (!v.is_number_integer())
        fail("{}: row {}, position {}: expected an integer token id, got {}", path, r, p, v.dump());
      const int64_t id = v.get<int64_t>();
      if (id < 0 || id >= d_vocab)
        fail(
            "{}: row {}, position {}: token id {} is out of range for the model's vocabulary of "
            "size {}",
            path, r, p, id, d_vocab);
      flat.push_back(id);
    }
  }
  return torch::tensor(flat, torch::kLong)
      .view({static_cast<int64_t>(j.size()), static_cast<int64_t>(len)});
}

NamedTensors record_activations(const LoadedModel& m, const at::Tensor& tokens,
                                const std::vector<std::string>& hooks, bool logits,
                                int64_t batch_size, const std::string& where) {
  if (batch_size <= 0) fail("--batch-size: expected a positive number of rows, got {}", batch_size);
  if (hooks.empty() && !logits) fail("--hooks: expected at least one hook name (or --logits)");
  for (auto& h : hooks) m.model->check_hook_name(h);
  const std::string& pt = m.cfg.positional_embedding_type;
  if ((pt == "standard" || pt == "shortformer") && tokens.size(1) > m.cfg.n_ctx)
    fail("{}: rows have {} tokens, more than the model's context of {}", where, tokens.size(1),
         m.cfg.n_ctx);
  // ln_final.* hooks come after the last block: run the whole pass for them (the runtime stops
  // after the blocks when logits are not asked for).
  bool full_pass = logits;
  for (auto& h : hooks) full_pass = full_pass || h.rfind("ln_final.", 0) == 0;
  std::map<std::string, std::vector<at::Tensor>> parts;
  for (int64_t start = 0; start < tokens.size(0); start += batch_size) {
    const int64_t n = std::min(batch_size, tokens.size(0) - start);
    auto cache = m.model->run_with_cache(tokens.narrow(0, start, n), hooks, full_pass);
    for (auto& [name, t] : cache) parts[name].push_back(t.to(at::kCPU).contiguous());
  }
  NamedTensors out;
  std::vector<std::string> names = hooks;
  if (logits) names.push_back("logits");
  for (auto& name : names) {
    auto it = parts.find(name);
    if (it == parts.end()) fail("internal: the model returned no activation for '{}'", name);
    out.emplace_back(name, it->second.size() == 1 ? it->second[0] : at::cat(it->second, 0));
  }
  return out;
}

}  // namespace saelab
