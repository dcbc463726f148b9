// `saelab eval` and `saelab info` end to end: SAEs with random weights written by save_sae, an
// activations file, and every reported number checked against an independent float64
// computation (Debian's python3 + numpy reading the safetensors bytes itself; plain loops here).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "saelab/core/json.h"
#include "saelab/core/safetensors.h"
#include "saelab/sae/sae.h"
#include "test_util.h"

using namespace saelab;
using test::shell_quote;

namespace {

constexpr int64_t kDin = 16, kDsae = 64, kTokens = 3000;

// Random tied weights (W_dec = 0.5 W_encᵀ, unit encoder columns: roughly what ReLU latents need to
// reconstruct), one latent that can never fire (b_enc −100) and one that nearly always fires
// (b_enc +3, small decoder row), so dead and dense counts are not trivially zero.
void write_sae(const std::string& dir, const std::string& arch, const std::string& dtype,
               uint64_t seed, bool with_sparsity = false) {
  torch::manual_seed(seed);
  SaeConfig cfg;
  cfg.architecture = arch;
  cfg.d_in = kDin;
  cfg.d_sae = kDsae;
  cfg.dtype = dtype;
  cfg.k = arch == "topk" ? 8 : 0;
  cfg.model_name = "gpt2";
  cfg.hook_name = "blocks.3.hook_resid_pre";
  cfg.hook_layer = 3;
  cfg.apply_b_dec_to_input = arch != "jumprelu";
  auto sae = make_sae(cfg);
  const auto t = dtype == "float64" ? at::kDouble : at::kFloat;
  auto& p = sae->params();
  auto W_enc = torch::randn({kDin, kDsae});
  W_enc = W_enc / W_enc.norm(2, {0}, true);
  auto W_dec = W_enc.t() * (arch == "topk" ? 1.0 : 0.5);
  W_dec[1] *= 0.05;
  p["W_enc"] = W_enc.to(t);
  p["W_dec"] = W_dec.contiguous().to(t);
  p["b_dec"] = (torch::randn({kDin}) * 0.1).to(t);
  auto b_enc = torch::randn({kDsae}) * 0.2 - 0.3;
  b_enc[0] = -100.0;
  b_enc[1] = 3.0;
  p["b_enc"] = b_enc.to(t);
  if (arch == "jumprelu") p["threshold"] = (torch::rand({kDsae}) * 0.5 + 0.05).to(t);
  std::optional<at::Tensor> sparsity;
  if (with_sparsity) {
    // Densities spanning dead, very rare, healthy and dense.
    auto density = torch::pow(10.0, -torch::rand({kDsae}, at::kDouble) * 7);
    density.slice(0, 0, 5).zero_();
    sparsity = torch::log10(density + 1e-10).to(at::kFloat);
  }
  save_sae(*sae, dir, sparsity);
}

void write_activations(const std::string& path, at::ScalarType dtype, uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randn({kTokens, kDin}) * 1.5 + torch::linspace(-1, 1, kDin);
  x[17].zero_();  // a zero-norm token exercises the cossim / l2_ratio conventions
  save_safetensors(path, {{"activations", x.to(dtype)}, {"tokens", torch::arange(kTokens)}});
}

// Independent expected metrics: numpy reads cfg.json, sae_weights.safetensors and the activations
// file byte by byte, applies the architecture's encoder in float64, and computes each metric.
json python_metrics(const std::string& sae_dir, const std::string& acts_path) {
  std::string script = R"PY(
import json, struct, sys
import numpy as np

def read_st(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    header = json.loads(b[8:8 + n])
    data = b[8 + n:]
    out = {}
    for name, e in header.items():
        if name == '__metadata__':
            continue
        raw = data[e['data_offsets'][0]:e['data_offsets'][1]]
        if e['dtype'] == 'BF16':
            a = (np.frombuffer(raw, '<u2').astype(np.uint32) << 16).view(np.float32)
        elif e['dtype'] in ('F16', 'F32', 'F64'):
            a = np.frombuffer(raw, {'F16': '<f2', 'F32': '<f4', 'F64': '<f8'}[e['dtype']])
        else:
            continue
        out[name] = a.astype(np.float64).reshape(e['shape'])
    return out

sae_dir, acts_path = sys.argv[1], sys.argv[2]
cfg = json.load(open(sae_dir + '/cfg.json'))
w = read_st(sae_dir + '/sae_weights.safetensors')
x = read_st(acts_path)['activations']
arch = cfg['architecture']
xt = x - w['b_dec'] if cfg.get('apply_b_dec_to_input', True) else x
z = xt @ w['W_enc'] + w['b_enc']
if arch == 'standard':
    f = np.maximum(z, 0)
elif arch == 'topk':
    k = cfg.get('k') or cfg['activation_fn_kwargs']['k']
    idx = np.argsort(-z, axis=1)[:, :k]
    rows = np.arange(z.shape[0])[:, None]
    f = np.zeros_like(z)
    f[rows, idx] = np.maximum(z[rows, idx], 0)
elif arch == 'jumprelu':
    f = np.maximum(z, 0) * (z > w['threshold'])
else:
    raise SystemExit('unsupported ' + arch)
xh = f @ w['W_dec'] + w['b_dec']

n, d = x.shape
sst = ((x - x.mean(0)) ** 2).sum()
sse = ((x - xh) ** 2).sum()
nx = np.sqrt((x ** 2).sum(1))
ny = np.sqrt((xh ** 2).sum(1))
dot = (x * xh).sum(1)
both = nx * ny > 0
has_in = nx > 0
fires = (f > 0).sum(0)
dens = fires / n
print(json.dumps({
    'n_tokens': int(n),
    'reconstruction_quality/explained_variance': float(1 - sse / sst),
    'reconstruction_quality/mse': float(sse / n / d),
    'reconstruction_quality/cossim': float(np.where(both, dot / np.where(both, nx * ny, 1), 0).mean()),
    'shrinkage/l2_norm_in': float(nx.mean()),
    'shrinkage/l2_norm_out': float(ny.mean()),
    'shrinkage/l2_ratio': float((ny[has_in] / nx[has_in]).mean()),
    'shrinkage/relative_reconstruction_bias': float((ny ** 2).sum() / dot.sum()),
    'sparsity/l0': float((f > 0).sum(1).mean()),
    'sparsity/l1': float(np.abs(f).sum(1).mean()),
    'sparsity/dead_features': int((fires == 0).sum()),
    'sparsity/dense_features': int((dens > 1e-2).sum()),
    'sparsity/below_1e-5': int((dens < 1e-5).sum()),
    'sparsity/below_1e-6': int((dens < 1e-6).sum()),
    # 50 equal bins of log10(density + 1e-10) over [-10, 0]; numpy's last bin is closed, as saelab's.
    'plots/feature_density_line_chart': {
        'value': 'log10(feature density + 1e-10)',
        'bin_edges': np.linspace(-10.0, 0.0, 51).tolist(),
        'counts': np.histogram(np.log10(dens + 1e-10), bins=np.linspace(-10.0, 0.0, 51))[0].astype(int).tolist()},
}))
)PY";
  test::TempDir tmp;
  test::write_text(tmp / "expected.py", script);
  auto r = test::run_command("/usr/bin/python3 " + shell_quote(tmp / "expected.py") + " " +
                             shell_quote(sae_dir) + " " + shell_quote(acts_path));
  if (r.rc != 0) throw std::runtime_error("python failed: " + r.err);
  return json::parse(r.out);
}

void expect_same_metrics(const json& got, const json& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what << ": " << got.dump();
  for (auto it = want.begin(); it != want.end(); ++it) {
    ASSERT_TRUE(got.contains(it.key())) << what << ": missing " << it.key();
    const json& g = got[it.key()];
    if (it->is_object()) {  // the density histogram: same bins, same counts
      EXPECT_EQ(g.at("counts"), it->at("counts")) << what << ": " << it.key();
      ASSERT_EQ(g.at("bin_edges").size(), it->at("bin_edges").size()) << what;
      for (size_t i = 0; i < g["bin_edges"].size(); ++i)
        EXPECT_NEAR(g["bin_edges"][i].get<double>(), it->at("bin_edges")[i].get<double>(), 1e-12)
            << what;
      continue;
    }
    if (it->is_number_integer()) {
      EXPECT_TRUE(g.is_number_integer()) << what << ": " << it.key() << " = " << g.dump();
      EXPECT_EQ(g.get<int64_t>(), it->get<int64_t>()) << what << ": " << it.key();
    } else {
      double w = it->get<double>();
      EXPECT_NEAR(g.get<double>(), w, 1e-4 * std::abs(w)) << what << ": " << it.key();
    }
  }
}

json run_eval_json(const std::string& sae_dir, const std::string& acts,
                   const std::string& extra = "") {
  auto r = test::run_saelab("eval --sae " + shell_quote(sae_dir) + " --activations " +
                            shell_quote(acts) + " --json " + extra);
  EXPECT_EQ(r.rc, 0) << r.err;
  // Exactly one JSON object on stdout.
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  return json::parse(r.out);
}

}  // namespace

TEST(EvalCli, EveryArchitectureMatchesNumpyFloat64) {
  test::TempDir dir;
  write_activations(dir / "acts.safetensors", at::kFloat, 11);
  // topk in float64: a float32 SAE could order two nearly equal pre-activations differently from
  // numpy and pick another latent, which is a real but uninteresting difference.
  for (auto [arch, dtype] : {std::pair<std::string, std::string>{"standard", "float32"},
                             {"topk", "float64"},
                             {"topk", "float32"},
                             {"jumprelu", "float32"}}) {
    std::string sae_dir = dir / (arch + "_" + dtype);
    write_sae(sae_dir, arch, dtype, 21);
    json want = python_metrics(sae_dir, dir / "acts.safetensors");
    ASSERT_GE(want["sparsity/dead_features"].get<int64_t>(), 1) << arch;
    ASSERT_GE(want["sparsity/dense_features"].get<int64_t>(), 1) << arch;
    // Batches of 700 leave an uneven last batch (3000 = 4 × 700 + 200): metrics must not change.
    expect_same_metrics(run_eval_json(sae_dir, dir / "acts.safetensors", "--batch-size 700"), want,
                        arch + "/" + dtype + " batch 700");
    if (arch == "standard")  // the default batch size: the whole file in one batch
      expect_same_metrics(run_eval_json(sae_dir, dir / "acts.safetensors"), want,
                          arch + "/" + dtype);
  }
}

TEST(EvalCli, HalfAndDoubleActivationFilesAreRead) {
  test::TempDir dir;
  write_sae(dir / "sae", "standard", "float32", 5);
  for (auto dtype : {at::kHalf, at::kBFloat16, at::kDouble}) {
    std::string path = dir / ("acts_" + std::string(c10::toString(dtype)) + ".safetensors");
    write_activations(path, dtype, 12);
    expect_same_metrics(run_eval_json(dir / "sae", path, "--batch-size 1024"),
                        python_metrics(dir / "sae", path), c10::toString(dtype));
  }
}

TEST(EvalCli, HumanTableListsEveryMetricByGroup) {
  test::TempDir dir;
  write_sae(dir / "sae", "topk", "float32", 6);
  write_activations(dir / "acts.safetensors", at::kFloat, 13);
  auto r = test::run_saelab("eval --sae " + shell_quote(dir / "sae") + " --activations " +
                            shell_quote(dir / "acts.safetensors"));
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const char* s :
       {"reconstruction_quality\n", "shrinkage\n", "sparsity\n", "  explained_variance ",
        "  relative_reconstruction_bias ", "  dead_features ", "  below_1e-6 ", "n_tokens ",
        "feature density histogram: latents per decade of log10(density + 1e-10)"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << " in\n" << r.out;
  EXPECT_NE(r.out.find(" 3000\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find('{'), std::string::npos);
}

TEST(EvalCli, BadActivationsFilesGiveOneLineErrors) {
  test::TempDir dir;
  write_sae(dir / "sae", "standard", "float32", 7);
  torch::manual_seed(0);
  save_safetensors(dir / "no_acts.safetensors", {{"x", torch::randn({10, kDin})}});
  save_safetensors(dir / "wrong_din.safetensors", {{"activations", torch::randn({10, kDin + 1})}});
  save_safetensors(dir / "rank3.safetensors", {{"activations", torch::randn({2, 5, kDin})}});
  save_safetensors(dir / "ints.safetensors",
                   {{"activations", torch::zeros({10, kDin}, at::kLong)}});
  test::write_text(dir / "garbage.safetensors", "not a safetensors file at all");
  struct Case {
    std::string file, must_contain;
  };
  for (const Case& c :
       std::vector<Case>{{"no_acts.safetensors", "no tensor 'activations'"},
                         {"wrong_din.safetensors", "has d_in 17 (shape [10, 17]), but the SAE"},
                         {"wrong_din.safetensors", "expects d_in 16"},
                         {"rank3.safetensors", "rank 3"},
                         {"ints.safetensors", "float dtype"},
                         {"garbage.safetensors", "garbage.safetensors"},
                         {"missing.safetensors", "not a file"},
                         {"", "not a file"}}) {
    std::string path = c.file.empty() ? dir.path() : dir / c.file;  // "" = a directory
    auto r = test::run_saelab("eval --sae " + shell_quote(dir / "sae") + " --activations " +
                              shell_quote(path) + " --json");
    EXPECT_EQ(r.rc, 1) << c.file << ": " << r.err;
    EXPECT_EQ(r.err.rfind("saelab: error: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(c.must_contain), std::string::npos) << r.err;
    if (!c.file.empty() && c.file != "garbage.safetensors")
      EXPECT_NE(r.err.find(path), std::string::npos) << r.err;  // names the file
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  auto bad_batch = test::run_saelab("eval --sae " + shell_quote(dir / "sae") + " --activations " +
                                    shell_quote(dir / "wrong_din.safetensors") + " --batch-size 0");
  EXPECT_EQ(bad_batch.rc, 1) << bad_batch.err;
}

namespace {

struct Stats {
  double min, mean, max, std;
};

Stats stats_of(const std::vector<double>& v) {
  Stats s{v[0], 0, v[0], 0};
  for (double a : v) s.min = std::min(s.min, a), s.max = std::max(s.max, a), s.mean += a / v.size();
  for (double a : v) s.std += (a - s.mean) * (a - s.mean) / v.size();
  s.std = std::sqrt(s.std);
  return s;
}

void expect_stats(const json& got, const Stats& want, const std::string& what) {
  EXPECT_NEAR(got["min"].get<double>(), want.min, 1e-9 * std::abs(want.min)) << what;
  EXPECT_NEAR(got["mean"].get<double>(), want.mean, 1e-9 * std::abs(want.mean)) << what;
  EXPECT_NEAR(got["max"].get<double>(), want.max, 1e-9 * std::abs(want.max)) << what;
  EXPECT_NEAR(got["std"].get<double>(), want.std, 1e-9 * std::abs(want.std)) << what;
}

}  // namespace

TEST(InfoCli, JsonFieldsMatchTheWeights) {
  test::TempDir dir;
  for (std::string arch : {"jumprelu", "topk"}) {
    std::string sae_dir = dir / arch;
    write_sae(sae_dir, arch, "float32", 8, /*with_sparsity=*/true);
    auto w = load_safetensors(sae_dir + "/sae_weights.safetensors");
    auto r = test::run_saelab("info " + shell_quote(sae_dir) + " --json");
    ASSERT_EQ(r.rc, 0) << r.err;
    json j = json::parse(r.out);
    EXPECT_EQ(j["architecture"], arch);
    EXPECT_EQ(j["d_in"], kDin);
    EXPECT_EQ(j["d_sae"], kDsae);
    EXPECT_EQ(j["hook_name"], "blocks.3.hook_resid_pre");
    EXPECT_EQ(j["hook_layer"], 3);
    EXPECT_EQ(j["model_name"], "gpt2");
    EXPECT_EQ(j["dtype"], "float32");
    EXPECT_EQ(j["apply_b_dec_to_input"], arch != "jumprelu");
    EXPECT_EQ(j["normalize_activations"], "none");
    int64_t params = 2 * kDin * kDsae + kDsae + kDin + (arch == "jumprelu" ? kDsae : 0);
    EXPECT_EQ(j["num_parameters"], params);
    if (arch == "topk")
      EXPECT_EQ(j["k"], 8);
    else
      EXPECT_FALSE(j.contains("k"));

    auto W_dec = w.at("W_dec").to(at::kDouble), W_enc = w.at("W_enc").to(at::kDouble);
    auto Wd = W_dec.accessor<double, 2>();
    auto We = W_enc.accessor<double, 2>();
    std::vector<double> dec(kDsae, 0.0), enc(kDsae, 0.0);
    for (int64_t i = 0; i < kDsae; ++i) {
      for (int64_t d = 0; d < kDin; ++d)
        dec[i] += Wd[i][d] * Wd[i][d], enc[i] += We[d][i] * We[d][i];
      dec[i] = std::sqrt(dec[i]);
      enc[i] = std::sqrt(enc[i]);
    }
    expect_stats(j["decoder_norms"], stats_of(dec), arch + " decoder");
    expect_stats(j["encoder_norms"], stats_of(enc), arch + " encoder");
    if (arch == "jumprelu") {
      auto th = w.at("threshold").to(at::kDouble);
      expect_stats(
          j["threshold"],
          stats_of(std::vector<double>(th.data_ptr<double>(), th.data_ptr<double>() + kDsae)),
          "threshold");
    } else {
      EXPECT_FALSE(j.contains("threshold"));
    }

    // Feature density from sparsity.safetensors, recounted here from the stored log10 values.
    auto sp = load_safetensors(sae_dir + "/sparsity.safetensors").at("sparsity").to(at::kDouble);
    int64_t dead = 0, dense = 0, b5 = 0, b6 = 0;
    for (int64_t i = 0; i < kDsae; ++i) {
      double v = sp[i].item<double>();
      double dens = std::pow(10.0, v) - 1e-10;
      bool is_dead = v <= -10.0 + 1e-6;
      dead += is_dead, dense += dens > 1e-2, b5 += is_dead || dens < 1e-5,
          b6 += is_dead || dens < 1e-6;
    }
    const json& fd = j["feature_density"];
    EXPECT_EQ(fd["dead_features"].get<int64_t>(), dead);
    EXPECT_EQ(dead, 5);
    EXPECT_EQ(fd["dense_features"].get<int64_t>(), dense);
    EXPECT_EQ(fd["below_1e-5"].get<int64_t>(), b5);
    EXPECT_EQ(fd["below_1e-6"].get<int64_t>(), b6);
    EXPECT_NEAR(fd["mean_log10_feature_sparsity"].get<double>(), sp.mean().item<double>(), 1e-9);

    auto human = test::run_saelab("info " + shell_quote(sae_dir));
    ASSERT_EQ(human.rc, 0) << human.err;
    EXPECT_NE(human.out.find("decoder row norms"), std::string::npos) << human.out;
    EXPECT_NE(human.out.find("blocks.3.hook_resid_pre"), std::string::npos) << human.out;
  }
}

TEST(InfoCli, ErrorsAreOneLine) {
  test::TempDir dir;
  // The --model branch belongs to the model runtime; here only: SAE_DIR and --model together, or
  // neither, or a missing SAE directory, each give one line naming the problem.
  for (const std::string& args :
       {"info " + shell_quote(dir / "nope"), "info " + shell_quote(dir.path()) + " --model gpt2",
        std::string("info")}) {
    auto r = test::run_saelab(args);
    EXPECT_EQ(r.rc, 1) << args << ": " << r.err;
    EXPECT_EQ(r.err.rfind("saelab: error: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(args == "info"                              ? "SAE_DIR"
                         : args.find("--model") != std::string::npos ? "not both"
                                                                     : "nope"),
              std::string::npos)
        << r.err;
  }
}
