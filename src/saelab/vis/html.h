// Building blocks of the self-contained HTML pages saelab writes (training reports, feature
// dashboards): escaping, data embedded safely in a page, and the vendored JS/CSS compiled into the
// binary. A page made with these needs no network and no file beside it: it opens from file://.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "saelab/core/json.h"

namespace saelab::vis {

// Text for an HTML element's content or a quoted attribute value: & < > " ' escaped.
std::string html_escape(std::string_view text);

// j serialised for a <script> element: every '<' is written as \u003c (valid inside JSON strings,
// the only place '<' can occur), so no "</script>" or "<!--" in the data can end or change the
// element. Non-finite numbers, which JSON cannot hold, are null. Read it back in the page with
// JSON.parse(document.getElementById(id).textContent).
std::string json_for_script(const json& j);
// <script type="application/json" id="ID">json_for_script(j)</script>
std::string json_script_tag(std::string_view id, const json& j);

// <script>js</script> and <style>css</style>. Fails (saelab::Error) when the text holds "</script"
// or "</style" (any case), which would end the element early; vendored code is checked for it
// when it is vendored (scripts/vendor-js.sh), so this never fires for the embedded assets.
std::string script_tag(std::string_view js);
std::string style_tag(std::string_view css);

// The files compiled into the binary, by path relative to third_party/ or src/saelab/vis/assets/
// (e.g. "uplot/uPlot.iife.min.js", "report.js"). Fails (saelab::Error) for an unknown name, naming
// it and listing the known ones.
std::string_view asset(std::string_view name);
std::vector<std::string> asset_names();

namespace detail {
struct EmbeddedAsset {
  const char* name;  // "" ends the table
  std::string_view bytes;
};
// Generated at build time by embed_assets.cmake; ends with an entry whose name is "".
extern const EmbeddedAsset kEmbeddedAssets[];
}  // namespace detail

}  // namespace saelab::vis
