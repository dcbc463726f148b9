#!/usr/bin/env bash
# Side-by-side speed of saelab's training step and PyTorch eager, in one run:
#   1. the machine's float32 sgemm rate (saelab bench --sgemm-n N, no architectures);
#   2. per shape, the PyTorch reference: ../shared/bench/pytorch_eager_step.py (standard, topk)
#      and bench/pytorch_eager_more.py (gated, jumprelu, batchtopk), with Debian's /usr/bin/python3;
#   3. per shape and architecture, `saelab bench --json` in its own process (per-arch peak RSS);
#   4. a table: arch, shape, reference tokens/s, saelab tokens/s, ratio, GFLOP/s, fraction of sgemm.
# usage: bench/compare.sh [--grid "512x8192 2304x32768 ..."] [--archs "standard topk ..."]
#                         [--batch 4096] [--steps 3] [--k 32] [--sgemm-n 4096] [--out results.json]
#                         [--device cuda]   (GPU: both sides on it; the reference is then
#                                            bench/pytorch_eager_more.py for every architecture)
# Defaults: the issue's full grid (d_in ∈ {512, 2304} × d_sae ∈ {8192, 32768}), all five archs.
# Env: SAELAB (the binary, default build/saelab), SAELAB_SHARED (default ../shared), PYTHON.
# bench/compare.sh --e2e [options]: `saelab train` end to end instead of the step alone (bench/e2e.py,
# whose --help lists its options).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [[ "${1:-}" == "--e2e" ]]; then shift; exec "${PYTHON:-/usr/bin/python3}" "$root/bench/e2e.py" "$@"; fi
SAELAB="${SAELAB:-$root/build/saelab}"
SHARED="${SAELAB_SHARED:-$root/../shared}"
PYTHON="${PYTHON:-/usr/bin/python3}"
grid="512x8192 512x32768 2304x8192 2304x32768"
archs="standard gated jumprelu topk batchtopk"
batch=4096 steps=3 k=32 sgemm_n=4096 out="" device=cpu
while [[ $# -gt 0 ]]; do
  case "$1" in
    --grid) grid="$2"; shift 2 ;;
    --archs) archs="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --k) k="$2"; shift 2 ;;
    --sgemm-n) sgemm_n="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --device) device="$2"; shift 2 ;;
    -h|--help) sed -n 2,15p "$0"; exit 0 ;;
    *) echo "compare.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
ref="$SHARED/bench/pytorch_eager_step.py"
[[ -x "$SAELAB" ]] || { echo "compare.sh: $SAELAB: expected the saelab binary (bash scripts/build.sh saelab)" >&2; exit 1; }
[[ -f "$ref" ]] || { echo "compare.sh: $ref: expected the PyTorch reference (set SAELAB_SHARED)" >&2; exit 1; }

tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
echo "# sgemm ${sgemm_n}²" >&2
"$SAELAB" bench --json --device "$device" --sgemm-n "$sgemm_n" --arch "" > "$tmp/sgemm.json"
export SAELAB_BENCH_DEVICE="$device"
for shape in $grid; do
  d_in="${shape%x*}"; d_sae="${shape#*x}"
  std_archs=() more_archs=()
  for a in $archs; do
    case "$device:$a" in cpu:standard|cpu:topk) std_archs+=("$a") ;; *) more_archs+=("$a") ;; esac
  done
  echo "# reference $shape" >&2
  if [[ ${#std_archs[@]} -gt 0 ]]; then
    "$PYTHON" "$ref" "$d_in" "$d_sae" "$batch" "$steps" "$k" >> "$tmp/ref.txt"
  fi
  if [[ ${#more_archs[@]} -gt 0 ]]; then
    "$PYTHON" "$root/bench/pytorch_eager_more.py" "$d_in" "$d_sae" "$batch" "$steps" "$k" \
      "$(IFS=,; echo "${more_archs[*]}")" >> "$tmp/ref.txt"
  fi
  for a in $archs; do
    echo "# saelab $a $shape" >&2
    "$SAELAB" bench --json --device "$device" --sgemm-n 0 --arch "$a" --d-in "$d_in" --d-sae "$d_sae" --batch "$batch" \
      --steps "$steps" --k "$k" >> "$tmp/saelab.jsonl"
  done
done
cat "$tmp/ref.txt" >&2
"$PYTHON" - "$tmp" "$archs" "$out" <<'PY'
import json, re, sys
tmp, archs, out = sys.argv[1], sys.argv[2].split(), sys.argv[3]
sgemm = json.load(open(f"{tmp}/sgemm.json"))
rate = sgemm["sgemm_gflops"]
ref = {}
for line in open(f"{tmp}/ref.txt"):
    m = re.match(r"(\w+) d_in=(\d+) d_sae=(\d+) B=(\d+).*: ([\d.]+) ms/step, ([\d.]+) tokens/s", line)
    if m: ref[(m[1], int(m[2]), int(m[3]))] = float(m[6])
rows = []
for line in open(f"{tmp}/saelab.jsonl"):
    for r in json.loads(line)["results"]:
        r["reference_tokens_per_s"] = ref.get((r["arch"], r["d_in"], r["d_sae"]))
        r["sgemm_fraction"] = r["gflops"] / rate
        rows.append(r)
print(f"sgemm {sgemm['sgemm_n']}² float32: {rate:.1f} GFLOP/s on {sgemm.get('device', 'cpu')}, {sgemm['threads']} threads, LibTorch {sgemm['libtorch']}")
print()
print("| arch | d_in × d_sae, batch | reference tok/s | saelab tok/s | ratio | saelab GFLOP/s | of sgemm | peak RSS MiB (budget) |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    rt = r["reference_tokens_per_s"]
    ratio = f"{r['tokens_per_s'] / rt:.2f}×" if rt else "n/a"
    rts = f"{rt:,.0f}" if rt else "n/a"
    path = "" if r["fast_path"] else " (autograd)"
    print(f"| {r['arch']}{path} | {r['d_in']} × {r['d_sae']}, {r['batch']} | {rts} | {r['tokens_per_s']:,.0f} | {ratio} "
          f"| {r['gflops']:.1f} | {100 * r['sgemm_fraction']:.0f}% | {r['peak_rss_mb']:.0f} ({1.5 * r['rss_budget_mb']:.0f}) |")
if out:
    json.dump({"sgemm": sgemm, "results": rows}, open(out, "w"), indent=1)
PY
