// HTML escaping, data embedded in <script> elements, and the assets compiled into the binary.
#include "saelab/vis/html.h"

#include <algorithm>
#include <cctype>

#include "saelab/core/error.h"

namespace saelab::vis {
namespace {

bool contains_ci(std::string_view text, std::string_view needle) {
  auto it = std::search(text.begin(), text.end(), needle.begin(), needle.end(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) ==
           std::tolower(static_cast<unsigned char>(b));
  });
  return it != text.end();
}

}  // namespace

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string json_for_script(const json& j) {
  // error_handler replace: a string with invalid UTF-8 (a file path, an error message) is written
  // with U+FFFD instead of making the whole page fail.
  const std::string text = j.dump(-1, ' ', false, json::error_handler_t::replace);
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '<')
      out += "\\u003c";
    else
      out += c;
  }
  return out;
}

std::string json_script_tag(std::string_view id, const json& j) {
  return "<script type=\"application/json\" id=\"" + html_escape(id) + "\">" + json_for_script(j) +
         "</script>\n";
}

std::string script_tag(std::string_view js) {
  if (contains_ci(js, "</script"))
    fail("inline script holds \"</script\", which would end the <script> element early");
  return "<script>" + std::string(js) + "</script>\n";
}

std::string style_tag(std::string_view css) {
  if (contains_ci(css, "</style"))
    fail("inline style holds \"</style\", which would end the <style> element early");
  return "<style>" + std::string(css) + "</style>\n";
}

std::string_view asset(std::string_view name) {
  for (const detail::EmbeddedAsset* a = detail::kEmbeddedAssets; *a->name; ++a)
    if (name == a->name) return a->bytes;
  std::string known;
  for (const auto& n : asset_names()) known += (known.empty() ? "" : ", ") + n;
  fail("no embedded asset \"{}\" (embedded: {})", name, known);
}

std::vector<std::string> asset_names() {
  std::vector<std::string> names;
  for (const detail::EmbeddedAsset* a = detail::kEmbeddedAssets; *a->name; ++a)
    names.push_back(a->name);
  return names;
}

}  // namespace saelab::vis
