// The BPE merge loop shared by Hugging Face BPE (lowest merge rank first) and SentencePiece BPE
// (highest merged-piece score first): a linked list of symbols and a priority queue of candidate
// pairs, ties going to the leftmost pair, so a long word costs O(n log n), not O(n^2).
#pragma once
#include <optional>
#include <queue>
#include <string>
#include <tuple>
#include <vector>

namespace saelab::tok {

// priority(a, b) -> std::optional<double>: the pair's priority (lower merges first) or nullopt
// when the pair does not merge.
template <class Priority>
std::vector<std::string> merge_symbols(std::vector<std::string> syms, Priority priority) {
  const int n = static_cast<int>(syms.size());
  if (n < 2) return syms;
  std::vector<int> prev(n), next(n);
  std::vector<char> alive(n, 1);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  // (priority, left index, right index, left size, right size): the sizes tell whether either
  // symbol has changed since the candidate was queued (a merge always makes a symbol longer).
  using Cand = std::tuple<double, int, int, size_t, size_t>;
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> queue;
  auto push = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    if (auto p = priority(syms[l], syms[r]))
      queue.emplace(*p, l, r, syms[l].size(), syms[r].size());
  };
  for (int i = 0; i + 1 < n; ++i) push(i, i + 1);
  while (!queue.empty()) {
    auto [p, l, r, ls, rs] = queue.top();
    queue.pop();
    if (!alive[l] || !alive[r] || next[l] != r || syms[l].size() != ls || syms[r].size() != rs)
      continue;
    syms[l] += syms[r];
    alive[r] = 0;
    next[l] = next[r];
    if (next[r] >= 0) prev[next[r]] = l;
    push(prev[l], l);
    push(l, next[l]);
  }
  std::vector<std::string> out;
  for (int i = 0; i >= 0; i = next[i]) out.push_back(std::move(syms[i]));
  return out;
}

}  // namespace saelab::tok
