// `saelab activations`: run a language model on a JSON file of token-id rows and save the
// activations at the named TransformerLens hooks (and optionally the logits) to a safetensors
// file, each under its hook name with a leading batch axis.
#include <torch/torch.h>

#include <algorithm>
#include <iostream>
#include <sstream>

#include "saelab/cli/command.h"
#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/core/safetensors.h"
#include "saelab/model/loader.h"
#include "saelab/model/transformer.h"

namespace saelab::cli {
namespace {

struct ActivationsOptions {
  std::string model;
  std::string tokens_file;
  std::string hooks;
  std::string output;
  bool logits = false;
  int64_t batch_size = 16;
  bool json = false;
};

// A JSON list of equal-length lists of token ids, each id in [0, d_vocab).
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

std::vector<std::string> split_hooks(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto b = item.find_first_not_of(" \t");
    if (b == std::string::npos) continue;
    std::string name = item.substr(b, item.find_last_not_of(" \t") - b + 1);
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
  }
  return out;
}

int run(const ActivationsOptions& o) {
  if (o.batch_size <= 0)
    fail("--batch-size: expected a positive number of rows, got {}", o.batch_size);
  const std::vector<std::string> hooks = split_hooks(o.hooks);
  if (hooks.empty() && !o.logits) fail("--hooks: expected at least one hook name (or --logits)");
  LoadedModel m = load_model(o.model);
  for (auto& h : hooks) m.model->check_hook_name(h);
  const at::Tensor tokens = read_token_rows(o.tokens_file, m.cfg.d_vocab);
  const std::string& pt = m.cfg.positional_embedding_type;
  if ((pt == "standard" || pt == "shortformer") && tokens.size(1) > m.cfg.n_ctx)
    fail("{}: rows have {} tokens, more than the model's context of {}", o.tokens_file,
         tokens.size(1), m.cfg.n_ctx);

  // ln_final.* hooks come after the last block: run the whole pass for them (the runtime stops
  // after the blocks when logits are not asked for).
  bool full_pass = o.logits;
  for (auto& h : hooks) full_pass = full_pass || h.rfind("ln_final.", 0) == 0;
  std::map<std::string, std::vector<at::Tensor>> parts;
  for (int64_t start = 0; start < tokens.size(0); start += o.batch_size) {
    const int64_t n = std::min(o.batch_size, tokens.size(0) - start);
    auto cache = m.model->run_with_cache(tokens.narrow(0, start, n), hooks, full_pass);
    for (auto& [name, t] : cache) parts[name].push_back(t.to(at::kCPU).contiguous());
  }
  NamedTensors out;
  std::vector<std::string> names = hooks;
  if (o.logits) names.push_back("logits");
  json summary = json::object();
  for (auto& name : names) {
    auto it = parts.find(name);
    if (it == parts.end()) fail("internal: the model returned no activation for '{}'", name);
    at::Tensor t = it->second.size() == 1 ? it->second[0] : at::cat(it->second, 0);
    summary[name] = t.sizes().vec();
    out.emplace_back(name, t);
  }
  save_safetensors(o.output, out, {{"model_name", o.model}, {"hooks", o.hooks}});
  if (o.json) {
    std::cout << json{{"output", o.output},
                      {"model", o.model},
                      {"batch", tokens.size(0)},
                      {"pos", tokens.size(1)},
                      {"tensors", summary}}
                     .dump()
              << "\n";
  } else {
    std::cout << "wrote " << o.output << " (" << tokens.size(0) << " x " << tokens.size(1)
              << " tokens)\n";
    for (auto& [name, t] : out)
      std::cout << "  " << name << " " << json(t.sizes().vec()).dump() << "\n";
  }
  return 0;
}

auto setup = [](CLI::App* sub) -> std::function<int()> {
  auto o = std::make_shared<ActivationsOptions>();
  sub->add_option("--model", o->model,
                  "model folder, .pth file, Hugging Face repo id or TransformerLens alias")
      ->required();
  sub->add_option("--tokens", o->tokens_file, "JSON file: a list of equal-length token-id lists")
      ->required();
  sub->add_option("--hooks", o->hooks, "comma-separated hook names, e.g. blocks.0.hook_resid_post");
  sub->add_option("--output", o->output,
                  "output .safetensors file (one tensor per hook, [batch, ...])")
      ->required();
  sub->add_flag("--logits", o->logits, "also save the logits [batch, pos, d_vocab] as 'logits'");
  sub->add_option("--batch-size", o->batch_size, "rows per forward pass (default 16)");
  sub->add_flag("--json", o->json, "print one JSON object describing what was written");
  sub->footer(
      "Example:\n  saelab activations --model gpt2 --tokens toks.json \\\n"
      "    --hooks blocks.8.hook_resid_pre,blocks.8.attn.hook_pattern --output acts.safetensors "
      "--logits");
  return [o] { return run(*o); };
};

}  // namespace
SAELAB_COMMAND("activations", "Save a language model's activations at hook points for given tokens",
               setup);
}  // namespace saelab::cli
