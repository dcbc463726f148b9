// `saelab report RUN_DIR|SWEEP_DIR [--out FILE.html] [--json] [--open]`: writes the training
// report (vis/report.h), one self-contained HTML page, and prints its path (or, with --json, one
// object describing what was drawn).
#include <cstdlib>
#include <iostream>

#include "saelab/cli/command.h"
#include "saelab/core/error.h"
#include "saelab/vis/report.h"
#include "saelab/vis/report_downsample.h"

namespace saelab::cli {
namespace {

struct ReportArgs {
  std::string dir;
  std::string out;
  bool json = false;
  bool open = false;
};

std::string shell_quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

int run(const ReportArgs& a) {
  vis::ReportOptions o;
  o.out = a.out;
  vis::ReportResult r = vis::write_report(a.dir, o);
  if (a.json) {
    std::cout << r.description.dump() << "\n";
  } else {
    std::cout << "report: " << r.path << " (" << (r.bytes + 512) / 1024 << " KiB)\n";
    for (const auto& e : r.description.value("errors", json::array()))
      std::cout << "  the run recorded an error: " << e.get<std::string>() << "\n";
  }
  if (a.open) {
    // A desktop opener when there is one; a headless machine just has the file.
    const std::string cmd = "xdg-open " + shell_quoted(r.path) + " >/dev/null 2>&1 &";
    if (std::system("command -v xdg-open >/dev/null 2>&1") != 0 || std::system(cmd.c_str()) != 0)
      std::cerr << "saelab: --open: no xdg-open here; open " << r.path << " in a browser\n";
  }
  return 0;
}

auto setup = [](CLI::App* sub) -> std::function<int()> {
  auto a = std::make_shared<ReportArgs>();
  sub->add_option("dir", a->dir, "A training run directory, or a sweep directory (sweep.json)")
      ->required();
  sub->add_option("--out", a->out, "Write the page here (default DIR/report.html)");
  sub->add_flag("--json", a->json,
                "Print {\"charts\": [{\"key\", \"points\", \"drawn\"}], \"density\", \"findings\", "
                "\"members\"} as one JSON object");
  sub->add_flag("--open", a->open, "Open the page in the desktop's browser (xdg-open)");
  sub->footer(fmt::format(
      "One HTML file with inline JS/CSS and data; it opens from file:// with no network.\n"
      "Shows: the run's model, hook, shape, tokens, wall time; saelab doctor's findings; one "
      "chart\n"
      "per metrics.jsonl series (x = training tokens; long runs drawn at {} min/max pairs);\n"
      "the feature-density histogram with its zones; for sweeps, every member overlaid and the\n"
      "L0 vs explained-variance / CE-score scatter with its Pareto front (docs/report.md).\n\n"
      "Examples:\n"
      "  saelab report checkpoints/toy                   # writes checkpoints/toy/report.html\n"
      "  saelab report runs/sweep_l1 --out sweep.html    # a sweep (and each member's report)\n"
      "  saelab report runs/a --json                     # what was drawn, as JSON",
      vis::kReportColumns));
  return [a] { return run(*a); };
};

}  // namespace
}  // namespace saelab::cli
SAELAB_COMMAND("report", "Write a run's or sweep's training report: one offline HTML page",
               saelab::cli::setup);
