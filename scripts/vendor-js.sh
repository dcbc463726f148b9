#!/usr/bin/env bash
# Refreshes the JavaScript vendored under third_party/ from the npm registry. The build never needs
# the network: the files this writes are committed, and CMake compiles them into the saelab binary
# (src/saelab/vis/embed_assets.cmake) so every HTML page saelab writes works offline.
#   scripts/vendor-js.sh            # the pinned version below
#   UPLOT_VERSION=1.6.33 scripts/vendor-js.sh
set -euo pipefail
cd "$(dirname "$0")/.."
UPLOT_VERSION=${UPLOT_VERSION:-1.6.32}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "uplot@$UPLOT_VERSION" >/dev/null && tar xzf "uplot-$UPLOT_VERSION.tgz")
dest=third_party/uplot
mkdir -p "$dest"
cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" "$tmp/package/LICENSE" "$dest/"
# An inline <script> ends at the first "</script": the vendored code must not contain one.
if grep -qi '</script' "$dest/uPlot.iife.min.js"; then
  echo "vendor-js: uPlot.iife.min.js contains '</script', it cannot be inlined" >&2
  exit 1
fi
cat > "$dest/README.md" <<README
# uPlot $UPLOT_VERSION (vendored)

The charting library of saelab's HTML reports (\`saelab report\`): https://github.com/leeoniya/uPlot,
MIT licence (LICENSE, copied from the package). Files copied unchanged from the npm package
\`uplot@$UPLOT_VERSION\`: \`dist/uPlot.iife.min.js\` (defines the global \`uPlot\`) and
\`dist/uPlot.min.css\`. They are compiled into the saelab binary and inlined into each page, so
a report needs no network. Refresh with \`scripts/vendor-js.sh\` (set \`UPLOT_VERSION\`).

sha256:
$(cd "$dest" && sha256sum uPlot.iife.min.js uPlot.min.css)
README
echo "vendored uplot@$UPLOT_VERSION into $dest"
