// Finding models on disk: paths, TransformerLens aliases and repo ids in a Hugging Face hub cache
// laid out as huggingface_hub does (refs/main -> snapshots/REV, files symlinked into blobs/), and
// the one-line errors for a missing model, an unsupported architecture and a missing tensor.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>

#include "model/test_load_fixtures.h"
#include "saelab/core/error.h"
#include "saelab/core/safetensors.h"
#include "saelab/model/hf_cache.h"
#include "saelab/model/loader.h"

namespace fs = std::filesystem;

namespace saelab {
namespace {

using test::tiny_model;

// Sets an environment variable for one test and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      setenv(name_, old_->c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(HfCache, CacheDirFromEnvironment) {
  ScopedEnv home("HOME", "/home/someone");
  {
    ScopedEnv a("HF_HUB_CACHE", nullptr), b("HF_HOME", nullptr);
    EXPECT_EQ(hf_hub_cache_dir(), "/home/someone/.cache/huggingface/hub");
  }
  {
    ScopedEnv a("HF_HUB_CACHE", nullptr), b("HF_HOME", "/data/hf");
    EXPECT_EQ(hf_hub_cache_dir(), "/data/hf/hub");
  }
  {
    ScopedEnv a("HF_HUB_CACHE", "/fast/hub"), b("HF_HOME", "/data/hf");
    EXPECT_EQ(hf_hub_cache_dir(), "/fast/hub");
  }
}

TEST(HfCache, AliasesMapToRepos) {
  EXPECT_EQ(tl_official_model_name("gpt2-small"), std::optional<std::string>("gpt2"));
  EXPECT_EQ(tl_official_model_name("tiny-stories-1L-21M"),
            std::optional<std::string>("roneneldan/TinyStories-1Layer-21M"));
  EXPECT_EQ(tl_official_model_name("ATTN-ONLY-2L-DEMO"),
            std::optional<std::string>("NeelNanda/Attn-Only-2L512W-Shortformer-6B-big-lr"));
  EXPECT_EQ(tl_official_model_name("othello-gpt"),
            std::optional<std::string>("Baidicoot/Othello-GPT-Transformer-Lens"));
  EXPECT_EQ(tl_official_model_name("gemma-2-2b"), std::optional<std::string>("google/gemma-2-2b"));
  EXPECT_EQ(tl_official_model_name("no-such-model"), std::nullopt);
}

TEST(HfCache, RefsMainChoosesTheSnapshot) {
  test::TempDir cache;
  // A decoy snapshot written later than the real one: refs/main must win over recency.
  test::make_fake_hf_cache(cache.path(), "tiny-org/tiny-gpt2", tiny_model("gpt2"), "aaaa1111");
  fs::create_directories(cache / "models--tiny-org--tiny-gpt2/snapshots/zzzz9999");
  test::write_text(cache / "models--tiny-org--tiny-gpt2/snapshots/zzzz9999/config.json",
                   "{\"model_type\": \"bert\"}");
  auto snap = find_hf_snapshot("tiny-org/tiny-gpt2", cache.path());
  ASSERT_TRUE(snap.has_value());
  EXPECT_EQ(fs::path(*snap).filename().string(), "aaaa1111");
  EXPECT_FALSE(find_hf_snapshot("tiny-org/other", cache.path()).has_value());
  ScopedEnv env("HF_HUB_CACHE", cache.path().c_str());
  const LoadedWeights w = load_model_weights("tiny-org/tiny-gpt2");
  EXPECT_EQ(w.cfg.family, "gpt2");
  EXPECT_EQ(w.cfg.model_name, "tiny-org/tiny-gpt2");
  EXPECT_EQ(fs::path(w.dir).filename().string(), "aaaa1111");
}

TEST(HfCache, AliasResolvedThroughHfHome) {
  test::TempDir home;
  test::make_fake_hf_cache(home / "hub", "gpt2", tiny_model("gpt2"));
  ScopedEnv a("HF_HUB_CACHE", nullptr), b("HF_HOME", home.path().c_str());
  LoadedModel m = load_model("gpt2-small");
  EXPECT_EQ(m.cfg.d_vocab, 50);
  EXPECT_EQ(m.cfg.n_layers, 2);
}

TEST(HfCache, TlNativeRepoWithPthInTheCache) {
  test::TempDir cache;
  test::make_fake_hf_cache(cache.path(), "NeelNanda/Attn-Only-2L512W-Shortformer-6B-big-lr",
                           tiny_model("attn_only"));
  ScopedEnv env("HF_HUB_CACHE", cache.path().c_str());
  const LoadedWeights w = load_model_weights("attn-only-2l-demo");
  EXPECT_EQ(w.cfg.positional_embedding_type, "shortformer");
  EXPECT_EQ(w.cfg.d_model, 16);  // from the config.json in the snapshot, not the built-in config
}

TEST(LoadErrors, MissingModelSaysWhereAndHowToDownload) {
  test::TempDir cache;
  ScopedEnv env("HF_HUB_CACHE", cache.path().c_str());
  const std::string msg = error_of([] { load_model_weights("gemma-2-2b"); });
  EXPECT_TRUE(contains(msg, cache.path() + "/models--google--gemma-2-2b")) << msg;
  EXPECT_TRUE(contains(msg, "huggingface-cli download google/gemma-2-2b")) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  const std::string msg2 = error_of([] { load_model_weights("some-org/some-model"); });
  EXPECT_TRUE(contains(msg2, "huggingface-cli download some-org/some-model")) << msg2;
}

TEST(LoadErrors, UnsupportedArchitectureNamesItAndTheSupportedOnes) {
  test::TempDir d;
  test::write_text(d / "config.json", R"({"model_type": "bert", "hidden_size": 8})");
  fs::copy_file(tiny_model("gpt2") + "/model.safetensors", d / "model.safetensors");
  const std::string msg = error_of([&] { load_model_weights(d.path()); });
  EXPECT_TRUE(contains(msg, "'bert'")) << msg;
  for (const char* t : {"gpt2", "gpt_neo", "gemma2", "llama", "mistral", "qwen2"})
    EXPECT_TRUE(contains(msg, t)) << msg;
}

TEST(LoadErrors, MissingTensorNamesFileAndTensor) {
  test::TempDir d;
  fs::copy_file(tiny_model("qwen2") + "/config.json", d / "config.json");
  auto sd = load_safetensors(tiny_model("qwen2") + "/model.safetensors");
  NamedTensors kept;
  for (auto& [k, v] : sd)
    if (k != "model.layers.1.self_attn.k_proj.bias") kept.emplace_back(k, v);
  save_safetensors(d / "model.safetensors", kept);
  const std::string msg = error_of([&] { load_model_weights(d.path()); });
  EXPECT_TRUE(contains(msg, d.path())) << msg;
  EXPECT_TRUE(contains(msg, "model.layers.1.self_attn.k_proj.bias")) << msg;
}

TEST(LoadErrors, ShardIndexNamingAMissingShard) {
  test::TempDir d;
  for (const char* f :
       {"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors"})
    fs::copy_file(tiny_model("llama") + "/" + f, d / f);
  const std::string msg = error_of([&] { load_model_weights(d.path()); });
  EXPECT_TRUE(contains(msg, "model-00002-of-00002.safetensors")) << msg;
}

TEST(LoadErrors, FolderWithoutWeights) {
  test::TempDir d;
  fs::copy_file(tiny_model("gpt2") + "/config.json", d / "config.json");
  const std::string msg = error_of([&] { load_model_weights(d.path()); });
  EXPECT_TRUE(contains(msg, "model.safetensors")) << msg;
}

TEST(TlNative, PthPathDirectly) {
  const std::string pth = tiny_model("othello") + "/synthetic_model_final.pth";
  const LoadedWeights w = load_model_weights(pth);
  EXPECT_EQ(w.cfg.d_vocab, 61);
  EXPECT_EQ(w.cfg.n_ctx, 59);
  EXPECT_EQ(w.cfg.normalization_type, "LN");
}

TEST(TlNative, LnPreCheckpointGetsUnitNorms) {
  // An OthelloGPT-style .pth with its LayerNorm weights folded away (TL's LNPre).
  test::TempDir d;
  test::run_python(
      "import torch, collections\n"
      "sd = torch.load(" +
      test::shell_quote(tiny_model("othello") + "/synthetic_model_final.pth") +
      ")\n"
      "sd = collections.OrderedDict((k, v) for k, v in sd.items() if '.ln' not in k and 'ln_final' "
      "not in k)\n"
      "torch.save(sd, " +
      test::shell_quote(d / "model.pth") + ")\n");
  auto cfg = read_json_file(tiny_model("othello") + "/config.json");
  cfg["normalization_type"] = "LNPre";
  write_json_atomic(d / "config.json", cfg);
  const LoadedWeights w = load_model_weights(d / "model.pth");
  EXPECT_TRUE(at::equal(w.weights.at("blocks.1.ln2.w"), torch::ones({16})));
  EXPECT_TRUE(at::equal(w.weights.at("ln_final.b"), torch::zeros({16})));
}

TEST(TlNative, BuiltInConfigsMatchReference) {
  // TransformerLens's hook table.
  const ModelConfig o = tl_native_config("othello-gpt");
  EXPECT_EQ(o.d_model, 512);
  EXPECT_EQ(o.n_layers, 8);
  EXPECT_EQ(o.n_heads, 8);
  EXPECT_EQ(o.d_head, 64);
  EXPECT_EQ(o.d_mlp, 2048);
  EXPECT_EQ(o.d_vocab, 61);
  EXPECT_EQ(o.n_ctx, 59);
  EXPECT_EQ(o.act_fn, "gelu");
  EXPECT_EQ(o.normalization_type, "LN");
  const ModelConfig a = tl_native_config("NeelNanda/Attn-Only-2L512W-Shortformer-6B-big-lr");
  EXPECT_EQ(a.d_model, 512);
  EXPECT_EQ(a.n_layers, 2);
  EXPECT_EQ(a.n_heads, 8);
  EXPECT_EQ(a.d_mlp, 0);
  EXPECT_EQ(a.normalization_type, "none");
  EXPECT_EQ(a.positional_embedding_type, "shortformer");
  EXPECT_EQ(a.d_vocab, 50277);
  EXPECT_THROW(tl_native_config("gpt2"), Error);
}

}  // namespace
}  // namespace saelab
