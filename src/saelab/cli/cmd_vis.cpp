// `saelab vis`: feature dashboards (vis/dashboard_data.h, vis/dashboard_page.h). Feature-centric:
// one streaming pass over --dataset, then a self-contained HTML page, optionally the statistics as
// JSON and Neuronpedia upload bodies. Prompt-centric (--prompt): one prompt's latents.
#include <filesystem>
#include <iostream>

#include "saelab/cli/command.h"
#include "saelab/cli/dataset_options.h"
#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/vis/dashboard_data.h"
#include "saelab/vis/dashboard_page.h"
#include "saelab/vis/neuronpedia.h"

namespace saelab::cli {
namespace {

struct VisCli {
  vis::VisOptions o;
  std::string out, json_path, neuronpedia, np_model, np_source, features, seqpos;
  int64_t position = 0;
  bool has_position = false;
};

std::vector<int64_t> parse_int_list(const std::string& s, const char* what) {
  std::vector<int64_t> out;
  size_t i = 0;
  while (i <= s.size()) {
    const size_t j = std::min(s.find(',', i), s.size());
    const std::string item = s.substr(i, j - i);
    try {
      size_t used = 0;
      out.push_back(std::stoll(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      fail("{}: expected comma-separated integers, got '{}'", what, s);
    }
    i = j + 1;
  }
  return out;
}

// "a,b", "a," or ",b": Python slice bounds, either may be empty.
void parse_seqpos(const std::string& s, vis::VisOptions& o) {
  const size_t c = s.find(',');
  if (c == std::string::npos || s.find(',', c + 1) != std::string::npos)
    fail("--seqpos-slice: expected START,STOP (Python slice bounds, either may be empty), got '{}'",
         s);
  auto bound = [&](const std::string& t) -> std::optional<int64_t> {
    if (t.empty()) return std::nullopt;
    return parse_int_list(t, "--seqpos-slice")[0];
  };
  o.seqpos_start = bound(s.substr(0, c));
  o.seqpos_stop = bound(s.substr(c + 1));
}

int run_vis(VisCli& c) {
  vis::VisOptions& o = c.o;
  if (!c.features.empty()) o.features = parse_int_list(c.features, "--features");
  if (!c.seqpos.empty()) parse_seqpos(c.seqpos, o);
  if (c.has_position) o.position = c.position;
  const std::string title = "saelab · " + std::filesystem::path(o.sae_dir).filename().string();
  if (!o.prompt.empty()) {
    o.stats_json = c.json_path;  // the prompt view reads a previous pass's statistics
    json view = vis::build_prompt_view(o);
    const std::string html = vis::prompt_view_html(view, title);
    write_file_atomic(c.out, html);
    std::cout << "wrote " << c.out << ": " << view["tokens"].size() << " tokens, "
              << view["ranked"].size() << " latents active at position "
              << view["position"].get<int64_t>() << "\n";
    return 0;
  }
  if (o.dataset.empty()) fail("vis: give --dataset D (feature dashboards) or --prompt TEXT");
  vis::DashboardData d = vis::build_feature_dashboard(o);
  const size_t n = d.stats["features"].size();
  const std::string html = vis::feature_dashboard_html(d.stats, d.page, title);
  write_file_atomic(c.out, html);
  const double fe = d.timing.forward_s + d.timing.encode_s;
  d.stats["timing"] = {{"forward_s", d.timing.forward_s},
                       {"encode_s", d.timing.encode_s},
                       {"stats_s", d.timing.stats_s},
                       {"loss_effects_s", d.loss_effects_s}};
  if (!c.json_path.empty()) write_file_atomic(c.json_path, d.stats.dump() + "\n");
  std::cout << "wrote " << c.out << ": " << n << " features, " << html.size() / 1024 << " KiB ("
            << html.size() / std::max<size_t>(n, 1) << " B/feature), "
            << d.stats["n_tokens"].get<int64_t>() << " counted tokens\n"
            << fmt::format(
                   "pass: model to hook {:.2f} s, SAE encode {:.2f} s, statistics {:.2f} s "
                   "({:.2f}x forward+encode)\n",
                   d.timing.forward_s, d.timing.encode_s, d.timing.stats_s,
                   fe > 0 ? (fe + d.timing.stats_s) / fe : 0.0)
            << fmt::format("top examples' loss effects: {:.2f} s ({})\n", d.loss_effects_s,
                           d.stats.value("loss_effects", std::string("none")));
  if (!c.json_path.empty()) std::cout << "wrote " << c.json_path << "\n";
  if (!c.neuronpedia.empty()) {
    const json& vocab = d.page["vocab"];
    auto token = [&](int64_t id) {
      const std::string k = std::to_string(id);
      return vocab.contains(k) ? vocab[k].get<std::string>() : k;
    };
    const std::string model_id = c.np_model.empty() ? o.model : c.np_model;
    const std::string source =
        c.np_source.empty() ? d.stats["hook_name"].get<std::string>() : c.np_source;
    auto ex = vis::write_neuronpedia(d.stats, c.neuronpedia, model_id, source, token);
    std::cout << "wrote " << ex.files.size() << " Neuronpedia upload bodies to " << c.neuronpedia
              << " (" << ex.n_features << " features; " << ex.n_skipped
              << " never fired and were left out)\n";
  }
  return 0;
}

auto setup = [](CLI::App* sub) -> std::function<int()> {
  auto c = std::make_shared<VisCli>();
  auto& o = c->o;
  sub->add_option("--sae", o.sae_dir, "SAE directory (cfg.json + sae_weights.safetensors)")
      ->required();
  sub->add_option("--model", o.model, "language model (HF folder, .pth, hub id or TL alias)")
      ->required();
  sub->add_option("--out", c->out, "the HTML page to write")->required();
  sub->add_option("--dataset", o.dataset,
                  "token data, read as `saelab eval --dataset` reads it (jsonl/npy/bin/txt/folder/"
                  "hub cache/othello)");
  add_dataset_part_options(sub, o.dataset_column, o.dataset_split, o.dataset_revision);
  sub->add_option("--prompt", o.prompt,
                  "prompt-centric view of this text instead of a dataset pass");
  sub->add_option("--position", c->position,
                  "prompt view: the position to rank latents at (default: last)")
      ->each([c](const std::string&) { c->has_position = true; });
  sub->add_option("--json", c->json_path,
                  "feature view: write the statistics here; prompt view: read a previous pass's");
  sub->add_option("--neuronpedia", c->neuronpedia,
                  "write Neuronpedia batch-upload bodies to this folder");
  sub->add_option("--neuronpedia-model-id", c->np_model, "Neuronpedia modelId (default: --model)");
  sub->add_option("--neuronpedia-source", c->np_source,
                  "Neuronpedia source id (default: the hook name)");
  sub->add_option("--features", c->features, "latents to show, e.g. 0,5,17");
  sub->add_option("--n-features", o.n_features, "how many latents --select picks (default 32)");
  sub->add_option("--select", o.select,
                  "density (most frequent over all the windows: two passes) | random | all");
  sub->add_option("--n-prompts", o.n_prompts, "windows of the dataset to read (default 1024)");
  sub->add_option("--context-size", o.context_size, "tokens per window (default 128)");
  sub->add_option("--batch-size-prompts", o.batch_size_prompts,
                  "windows per forward pass (default 8)");
  sub->add_option("--top-k", o.top_k, "top activating examples per latent (default 20)");
  sub->add_option("--loss-effect-limit", o.loss_effect_limit,
                  "compute the top examples' loss effects (one forward each) when there are at "
                  "most this many in all (default 1024)");
  sub->add_option("--quantile-groups", o.quantile_groups,
                  "activation bands per latent (default 10)");
  sub->add_option("--examples-per-group", o.examples_per_group,
                  "random examples per band (default 5)");
  sub->add_option("--window", o.window, "context tokens either side of an example (default 10)");
  sub->add_flag("--include-special-tokens", o.include_special_tokens,
                "count BOS/EOS/PAD positions (excluded by default)");
  sub->add_option("--seqpos-slice", c->seqpos,
                  "count only positions in this Python slice, e.g. 5,-5");
  sub->add_option("--probe", o.probe,
                  "Othello board probes: safetensors or .pt with [d_in, 8, 8] tensors by name");
  sub->add_option("--seed", o.seed, "seed of the band samples and --select random (default 42)");
  sub->add_option("--device", o.device, "cpu or cuda (default cpu)");
  sub->footer(
      "The page is one self-contained file (no network); open it with #feature=N to show latent "
      "N.\n"
      "docs/vis.md describes every statistic and the --json fields.\n\n"
      "Examples:\n"
      "  saelab vis --sae runs/gpt2/final --model gpt2 --dataset tokens.jsonl --n-features 64 "
      "--out dash.html --json stats.json\n"
      "  saelab vis --sae runs/othello/final --model othello-gpt --dataset othello --seqpos-slice "
      "5,-5 --probe linear_probes.pt --out othello.html\n"
      "  saelab vis --sae runs/gpt2/final --model gpt2 --prompt \"The cat sat\" --json stats.json "
      "--out prompt.html");
  return [c] { return run_vis(*c); };
};

}  // namespace
SAELAB_COMMAND("vis", "Feature dashboards: one streaming pass, a self-contained HTML page", setup);
}  // namespace saelab::cli
