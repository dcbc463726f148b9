// `saelab activations`: parses options, records the activations at the named TransformerLens hooks
// (model/record_activations.h) over a JSON file of token-id rows, saves them to a safetensors file
// and prints what it wrote.
#include <algorithm>
#include <iostream>
#include <sstream>

#include "saelab/cli/command.h"
#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/core/safetensors.h"
#include "saelab/model/loader.h"
#include "saelab/model/record_activations.h"

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
  const std::vector<std::string> hooks = split_hooks(o.hooks);
  if (hooks.empty() && !o.logits) fail("--hooks: expected at least one hook name (or --logits)");
  LoadedModel m = load_model(o.model);
  const at::Tensor tokens = read_token_rows(o.tokens_file, m.cfg.d_vocab);
  const NamedTensors out =
      record_activations(m, tokens, hooks, o.logits, o.batch_size, o.tokens_file);
  save_safetensors(o.output, out, {{"model_name", o.model}, {"hooks", o.hooks}});
  if (o.json) {
    json summary = json::object();
    for (auto& [name, t] : out) summary[name] = t.sizes().vec();
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
