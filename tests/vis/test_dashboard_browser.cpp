// The `saelab vis` pages in headless Chromium from file:// with the network blocked
// (tests/vis/browser_check.js): no request and no console error, #feature=N shows N's card, the
// example tokens carry the activations the test computes itself, the index sorts and searches,
// Othello examples are boards, the prompt view ranks latents, and a 16,384-latent page opens fast
// and stays small.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "saelab/core/safetensors.h"
#include "test_util.h"
#include "vis/browser.h"
#include "vis/dashboard_fixture.h"

namespace saelab {
namespace {

using test::run_saelab;
using test::shell_quote;

void expect_clean(const test::BrowserResult& b) {
  ASSERT_EQ(b.rc, 0) << b.err;
  EXPECT_TRUE(b.result["requests"].empty()) << b.result.dump();
  EXPECT_TRUE(b.result["console_errors"].empty()) << b.result.dump();
  EXPECT_TRUE(b.result["page_errors"].empty()) << b.result.dump();
}

// browser_check.js opens a file path, which cannot carry a "#feature=N" fragment, so the page's
// hash is set first and the expression evaluated once the page has routed to it (the same route()
// the page runs on load).
std::string at_feature(int64_t f, const std::string& expr) {
  return "(async () => { location.hash = 'feature=" + std::to_string(f) +
         "'; await new Promise((r) => setTimeout(r, 100)); return " + expr + "; })()";
}

json value_of(const test::BrowserResult& b) {
  return json::parse(b.result["value"].get<std::string>());
}

TEST(VisBrowser, FeatureCardFromHashCarriesTheActivations) {
  test::TempDir d;
  const auto fx = test::make_vis_fixture(d.path(), 20, 6, 12);
  ASSERT_EQ(run_saelab(fx.args + " --select all --top-k 5 --window 3 --out " +
                       shell_quote(d / "dash.html"))
                .rc,
            0);
  const at::Tensor acts = test::hand_acts(fx.sae, fx.tokens);  // [6, 12, 20] float64

  // The latent with the largest counted activation, opened by its hash.
  const at::Tensor counted_max = acts.slice(1, 1).amax({0, 1});
  const int64_t f = counted_max.argmax().item<int64_t>();
  test::BrowserOptions o;
  o.wait = "document.body.dataset.ready === '1'";
  o.eval =
      at_feature(f,
                 "JSON.stringify({card: document.querySelector('#cards .card').dataset.feature,"
                 " ex: [...document.querySelectorAll('#cards .card .ex')].slice(0, 5).map((e) =>"
                 "  [...e.querySelectorAll('.tok')].map((t) => [+t.dataset.act, "
                 "t.classList.contains('mx'), t.dataset.loss === undefined ? null : "
                 "+t.dataset.loss]))})");
  auto b = test::open_in_browser(d / "dash.html", o);
  expect_clean(b);
  const json v = value_of(b);
  EXPECT_EQ(v["card"], std::to_string(f));
  // The top example's strip: its max-marked token holds the largest counted act of latent f, and
  // every token's data-act is the hand-computed act at that position (quantised to 1/255 of max).
  const double mx = counted_max[f].item<double>();
  const at::Tensor a = acts.select(2, f);
  const at::Tensor flat = a.slice(1, 1).flatten();
  const int64_t arg = flat.argmax().item<int64_t>();
  const int64_t b0 = arg / 11, t0 = arg % 11 + 1;
  const auto& strip = v["ex"][0];
  ASSERT_EQ(strip.size(), size_t(std::min<int64_t>(12, t0 + 4) - std::max<int64_t>(0, t0 - 3)));
  for (size_t k = 0; k < strip.size(); ++k) {
    const int64_t p = std::max<int64_t>(0, t0 - 3) + int64_t(k);
    EXPECT_NEAR(strip[k][0].get<double>(), a[b0][p].item<double>(), mx / 255 + 1e-3 * mx) << p;
    EXPECT_EQ(strip[k][1].get<bool>(), p == t0) << p;
    // The max token carries the example's loss effect (it has a next token unless it is last).
    EXPECT_EQ(strip[k][2].is_number(), p == t0 && t0 + 1 < 12) << p;
  }

  // The index: sorted by density (descending on first click), and searchable by index.
  test::BrowserOptions s;
  s.wait = o.wait;
  s.eval =
      "document.querySelector('#index th[data-sort=\"1\"]').click();"
      "const d = [...document.querySelectorAll('#index tr.row')].map((r) => "
      "+r.children[1].textContent);"
      "const q = document.getElementById('search'); q.value = '7'; q.dispatchEvent(new "
      "Event('input'));"
      "JSON.stringify({d, found: [...document.querySelectorAll('#index tr.row')].map((r) => "
      "+r.dataset.row)})";
  auto sb = test::open_in_browser(d / "dash.html", s);
  expect_clean(sb);
  const json sv = value_of(sb);
  ASSERT_EQ(sv["d"].size(), 20u);
  for (size_t k = 1; k < sv["d"].size(); ++k)
    EXPECT_GE(sv["d"][k - 1].get<double>(), sv["d"][k].get<double>()) << k;
  EXPECT_NE(std::find(sv["found"].begin(), sv["found"].end(), 7), sv["found"].end());
}

TEST(VisBrowser, OthelloExamplesAreBoardsAndProbesAreDrawn) {
  test::TempDir d;
  test::write_vis_sae(d / "sae", 16, 12);
  // Point the SAE at the Othello model's hook and write a probe the test knows.
  at::manual_seed(9);
  const at::Tensor probe = torch::randn({16, 8, 8});
  save_safetensors(d / "probe.safetensors", {{"empty", probe}});
  auto r =
      run_saelab("vis --sae " + shell_quote(d / "sae") + " --model " +
                 shell_quote(test::tiny_model("othello")) +
                 " --dataset othello --n-prompts 8 --context-size 20 --features 0,1,2 --top-k 4 "
                 "--probe " +
                 shell_quote(d / "probe.safetensors") + " --out " + shell_quote(d / "o.html") +
                 " --json " + shell_quote(d / "o.json"));
  ASSERT_EQ(r.rc, 0) << r.err;
  std::ifstream in(d / "o.json");
  json st;
  in >> st;
  // The probe cosines against a float64 computation.
  auto sae = load_sae(d / "sae");
  const at::Tensor P = probe.to(torch::kDouble).reshape({16, 64});
  const at::Tensor Pn = P / P.norm(2, 0, true);
  for (const auto& f : st["features"]) {
    const int64_t i = f["index"].get<int64_t>();
    const at::Tensor dec = sae->param("W_dec")[i].to(torch::kDouble);
    const at::Tensor cos = (dec / dec.norm()).matmul(Pn);
    for (int64_t q = 0; q < 64; ++q)
      EXPECT_NEAR(f["probes"]["empty"]["output"][q].get<double>(), cos[q].item<double>(), 1e-5);
  }
  test::BrowserOptions o;
  o.wait = "document.body.dataset.ready === '1'";
  o.eval = at_feature(
      0,
      "JSON.stringify([...document.querySelectorAll('#cards .board[data-move]')].map((b) =>"
      " [+b.dataset.pieces, +b.dataset.move, b.querySelectorAll('[data-legal]').length,"
      "  !!b.querySelector('rect[data-sq=\"' + b.dataset.move + '\"]')]))");
  o.screenshot = d / "board.png";
  auto b = test::open_in_browser(d / "o.html", o);
  expect_clean(b);
  const json boards = value_of(b);
  const auto& top = st["features"][0]["top_examples"];
  ASSERT_FALSE(top.empty());
  ASSERT_GE(boards.size(), top.size());
  for (size_t k = 0; k < top.size(); ++k) {
    // Before move t a game has 4 + t pieces (every move adds one; passes add none).
    EXPECT_EQ(boards[k][0].get<int64_t>(), 4 + top[k]["position"].get<int64_t>()) << k;
    EXPECT_GE(boards[k][2].get<int64_t>(), 1) << k;  // the move played was legal, so some are
  }
  if (const char* keep = std::getenv("SAELAB_VIS_SCREENSHOTS"))
    std::filesystem::copy_file(d / "board.png", std::string(keep) + "/vis-board.png",
                               std::filesystem::copy_options::overwrite_existing);
}

TEST(VisBrowser, PromptViewRanksTheHandComputedActivations) {
  test::TempDir d;
  const auto fx = test::make_vis_fixture(d.path(), 20, 4, 12);
  auto r = run_saelab("vis --sae " + shell_quote(fx.sae) + " --model " +
                      shell_quote(test::tiny_model("gpt2")) +
                      " --prompt 'the cab ab' --position 2 --out " + shell_quote(d / "p.html"));
  ASSERT_EQ(r.rc, 0) << r.err;
  test::BrowserOptions o;
  o.wait = "document.body.dataset.ready === '1'";
  o.eval =
      "JSON.stringify({ids: JSON.parse(document.getElementById('prompt').textContent).token_ids,"
      " ranked: [...document.querySelectorAll('#ranked tr.rk')].map((r) =>"
      "  [+r.dataset.index, +r.children[1].dataset.act, parseFloat(r.children[3].textContent)])})";
  auto b = test::open_in_browser(d / "p.html", o);
  expect_clean(b);
  const json v = value_of(b);
  std::vector<int64_t> ids = v["ids"].get<std::vector<int64_t>>();
  ASSERT_GT(ids.size(), 3u);  // position 2 has a next token: its loss effect is defined
  const at::Tensor acts = test::hand_acts(fx.sae, torch::tensor(ids).unsqueeze(0))[0][2];  // [20]
  const int64_t active = acts.gt(0).sum().item<int64_t>();
  ASSERT_GT(active, 0);
  ASSERT_EQ(int64_t(v["ranked"].size()), active);
  const auto [sv, si] = acts.sort(0, true);
  for (int64_t k = 0; k < active; ++k) {
    EXPECT_EQ(v["ranked"][k][0].get<int64_t>(), si[k].item<int64_t>()) << k;
    EXPECT_NEAR(v["ranked"][k][1].get<double>(), sv[k].item<double>(), 1e-3 * sv[0].item<double>());
  }
  // Loss effect: next-token loss at position 2 with act * W_dec[i] taken out of the hook there,
  // minus the clean loss (the page shows 3 significant digits).
  LoadedModel lm = load_model(test::tiny_model("gpt2"));
  auto sae = load_sae(fx.sae);
  const at::Tensor tok = torch::tensor(ids).unsqueeze(0);
  auto next_loss = [&](const at::Tensor& logits) {
    return -logits[0][2].to(torch::kDouble).log_softmax(-1)[ids[3]].item<double>();
  };
  const double clean = next_loss(lm.model->forward(tok));
  for (int64_t k = 0; k < active; ++k) {
    const int64_t i = si[k].item<int64_t>();
    const at::Tensor delta = (sae->param("W_dec")[i].to(torch::kDouble) * sv[k]).to(torch::kFloat);
    Hook h{test::kVisHook, [&](const at::Tensor& a, const std::string&) {
             at::Tensor r = a.clone();
             r[0][2] -= delta;
             return r;
           }};
    const double want = next_loss(lm.model->run_with_hooks(tok, {h})) - clean;
    EXPECT_NEAR(v["ranked"][k][2].get<double>(), want, 6e-3 * std::fabs(want) + 1e-4) << i;
  }
}

// With a previous pass's --json, each ranked latent's quantile is where its activation falls among
// that latent's counted firing activations: the page interpolates within a histogram bin, so it
// may differ from the exact fraction by at most that bin's share.
TEST(VisBrowser, PromptViewQuantilesFollowThePreviousPass) {
  test::TempDir d;
  const auto fx = test::make_vis_fixture(d.path(), 20, 8, 12);
  ASSERT_EQ(run_saelab(fx.args + " --select all --out " + shell_quote(d / "dash.html") +
                       " --json " + shell_quote(d / "stats.json"))
                .rc,
            0);
  auto r =
      run_saelab("vis --sae " + shell_quote(fx.sae) + " --model " +
                 shell_quote(test::tiny_model("gpt2")) + " --prompt 'the cab ab' --position 2 " +
                 "--json " + shell_quote(d / "stats.json") + " --out " + shell_quote(d / "p.html"));
  ASSERT_EQ(r.rc, 0) << r.err;
  test::BrowserOptions o;
  o.wait = "document.body.dataset.ready === '1'";
  o.eval =
      "JSON.stringify([...document.querySelectorAll('#ranked tr.rk')].map((r) =>"
      "  [+r.dataset.index, +r.children[1].dataset.act, parseFloat(r.children[2].textContent)]))";
  auto b = test::open_in_browser(d / "p.html", o);
  expect_clean(b);
  const json ranked = value_of(b);
  ASSERT_GT(ranked.size(), 0u);
  const at::Tensor acts = test::hand_acts(fx.sae, fx.tokens).slice(1, 1);  // BOS not counted
  for (const auto& e : ranked) {
    const int64_t i = e[0].get<int64_t>();
    const double act = e[1].get<double>();
    const at::Tensor fired =
        acts.select(2, i).flatten().masked_select(acts.select(2, i).flatten().gt(0));
    if (fired.numel() == 0) continue;
    const double exact = fired.le(act).sum().item<double>() / double(fired.numel());
    // The bin of the power-of-two range holding act, and its share of the firing positions.
    const double R = std::pow(2.0, std::ceil(std::log2(fired.max().item<double>())));
    const double lo = std::floor(act / R * 50) * R / 50, hi = lo + R / 50;
    const double share =
        fired.ge(lo).logical_and(fired.lt(hi)).sum().item<double>() / double(fired.numel());
    EXPECT_NEAR(e[2].get<double>(), exact, share + 6e-3) << "latent " << i << " act " << act;
  }
}

// 16,384 latents over a few tokens of the tiny model: the page opens in under 2 s and averages
// under 4 KB per latent.
TEST(VisBrowser, SixteenThousandLatentsOpenFastAndStaySmall) {
  test::TempDir d;
  const auto fx = test::make_vis_fixture(d.path(), 20, 64, 16);
  // Latents firing on ~1% of tokens, as trained SAEs do.
  test::write_vis_sae(d / "big", 16, 16384, 12, -1.5);
  auto r =
      run_saelab("vis --sae " + shell_quote(d / "big") + " --model " +
                 shell_quote(test::tiny_model("gpt2")) + " --dataset " + shell_quote(fx.dataset) +
                 " --n-prompts 64 --context-size 16 --batch-size-prompts 16 --select all --out " +
                 shell_quote(d / "big.html"));
  ASSERT_EQ(r.rc, 0) << r.err;
  const double per = double(std::filesystem::file_size(d / "big.html")) / 16384.0;
  std::cerr << "16384-latent page: " << per << " bytes per latent\n";
  EXPECT_LT(per, 4096.0);
  test::BrowserOptions o;
  o.wait = "document.body.dataset.ready === '1' && document.querySelector('#cards .card')";
  o.eval = at_feature(16383,
                      "JSON.stringify({rows: document.querySelectorAll('#index tr.row').length,"
                      " card: document.querySelector('#cards .card').dataset.feature})");
  auto b = test::open_in_browser(d / "big.html", o);
  expect_clean(b);
  const double ms = b.result["load_ms"].get<double>() + b.result["wait_ms"].get<double>();
  std::cerr << "16384-latent page: load " << b.result["load_ms"] << " ms + card "
            << b.result["wait_ms"] << " ms\n";
  EXPECT_LT(ms, 2000.0);
  EXPECT_GT(value_of(b)["rows"].get<int64_t>(), 0);
  EXPECT_EQ(value_of(b)["card"], "16383");
}

}  // namespace
}  // namespace saelab
