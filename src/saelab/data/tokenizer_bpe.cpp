// BpeTokenizer (tokenizer_bpe.h): added-token splitting, normalizer and pre-tokenizer steps,
// rank-ordered merges with a per-word cache, byte fallback, and the decoder pipeline.
#include "saelab/data/tokenizer_bpe.h"

#include <algorithm>

#include "saelab/core/error.h"
#include "saelab/data/tokenizer_merge.h"

namespace saelab::tok {

static constexpr char kSep = '\xff';  // never in UTF-8, so a + kSep + b is an unambiguous pair key
static constexpr size_t kCacheMaxWord = 256;
static constexpr size_t kCacheMaxEntries = 1 << 18;

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
}

BpeTokenizer::BpeTokenizer(BpeSpec spec) : spec_(std::move(spec)) {
  vocab_ = spec_.vocab;
  for (const auto& a : spec_.added) {
    if (a.id < 0) fail("{}: added token '{}' has negative id {}", spec_.where, a.content, a.id);
    if (static_cast<size_t>(a.id) >= vocab_.size()) vocab_.resize(a.id + 1);
    if (vocab_[a.id].empty()) vocab_[a.id] = a.content;
    if (a.content.empty()) fail("{}: added token {} has empty content", spec_.where, a.id);
  }
  for (size_t i = 0; i < vocab_.size(); ++i)
    if (!vocab_[i].empty()) ids_.emplace(vocab_[i], static_cast<int64_t>(i));
  for (const auto& a : spec_.added) ids_.emplace(a.content, a.id);
  ranks_.reserve(spec_.merges.size() * 2);
  for (size_t r = 0; r < spec_.merges.size(); ++r) {
    const auto& [a, b] = spec_.merges[r];
    if (!ids_.count(a) || !ids_.count(b) || !ids_.count(a + b))
      fail("{}: merge {} '{} {}' uses a token that is not in the vocabulary", spec_.where, r, a, b);
    ranks_.emplace(a + kSep + b, static_cast<int>(r));  // the first (lowest) rank wins
  }
  added_ = AddedTokenMatcher(spec_.added);
  if (!spec_.unk_token.empty()) {
    auto it = ids_.find(spec_.unk_token);
    if (it == ids_.end())
      fail("{}: unk_token '{}' is not in the vocabulary", spec_.where, spec_.unk_token);
    unk_id_ = it->second;
  }
  if (spec_.byte_fallback) {
    byte_ids_.assign(256, -1);
    for (int b = 0; b < 256; ++b) {
      auto it = ids_.find(byte_token(static_cast<uint8_t>(b)));
      if (it != ids_.end()) byte_ids_[b] = it->second;
    }
  }
}

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  std::stable_sort(tokens_.begin(), tokens_.end(), [](const AddedToken& x, const AddedToken& y) {
    return x.content.size() > y.content.size();
  });
  for (size_t k = 0; k < tokens_.size(); ++k)
    if (!tokens_[k].content.empty())
      by_first_[static_cast<unsigned char>(tokens_[k].content[0])].push_back(
          static_cast<uint32_t>(k));
}

std::vector<Segment> AddedTokenMatcher::split(std::string_view text) const {
  std::vector<Segment> out;
  size_t start = 0, i = 0;
  while (i < text.size()) {
    const AddedToken* hit = nullptr;
    for (uint32_t k : by_first_[static_cast<unsigned char>(text[i])])
      if (text.compare(i, tokens_[k].content.size(), tokens_[k].content) == 0) {
        hit = &tokens_[k];
        break;
      }
    if (!hit) {
      ++i;
      continue;
    }
    size_t end_text = i;
    if (hit->lstrip)
      while (end_text > start && is_space(text[end_text - 1])) --end_text;
    if (end_text > start) out.push_back({text.substr(start, end_text - start), -1, start});
    out.push_back({text.substr(i, hit->content.size()), hit->id, i});
    i += hit->content.size();
    if (hit->rstrip)
      while (i < text.size() && is_space(text[i])) ++i;
    start = i;
  }
  if (start < text.size()) out.push_back({text.substr(start), -1, start});
  return out;
}

std::vector<int64_t> BpeTokenizer::encode(const std::string& text) const {
  require_utf8(text, spec_.where + ": encode");
  std::vector<int64_t> out;
  for (const auto& seg : added_.split(text)) {
    if (seg.id >= 0)
      out.push_back(seg.id);
    else
      encode_segment(seg.text, seg.offset == 0, out);
  }
  return out;
}

// Splits each piece at the regex matches; with `metaspace_split`, splits before each replacement
// character instead (HF Metaspace split: the "▁" starts the next piece).
static std::vector<std::string> split_pieces(const std::vector<std::string>& pieces,
                                             const TextStep& st) {
  std::vector<std::string> out;
  for (const auto& p : pieces) {
    if (st.kind == TextStep::kMetaspace) {
      size_t from = 0, at = p.find(st.a, 1);
      while (at != std::string::npos) {
        out.push_back(p.substr(from, at - from));
        from = at;
        at = p.find(st.a, from + 1);
      }
      out.push_back(p.substr(from));
    } else {
      for (auto v : st.regex->split(p)) out.emplace_back(v);
    }
  }
  return out;
}

void BpeTokenizer::encode_segment(std::string_view text, bool at_start,
                                  std::vector<int64_t>& out) const {
  std::vector<std::string> pieces{std::string(text)};
  for (const auto& st : spec_.steps) {
    switch (st.kind) {
      case TextStep::kPrepend:
        for (auto& p : pieces)
          if (!p.empty()) p = st.a + p;
        break;
      case TextStep::kReplace:
        for (auto& p : pieces) replace_all(p, st.a, st.b);
        break;
      case TextStep::kSplitRegex:
        pieces = split_pieces(pieces, st);
        break;
      case TextStep::kByteLevel: {
        if (st.flag)
          for (auto& p : pieces)
            if (!p.empty() && p[0] != ' ') p = " " + p;
        if (st.use_regex) pieces = split_pieces(pieces, st);
        const auto& map = byte_to_unicode();
        for (auto& p : pieces) {
          std::string mapped;
          for (unsigned char c : p) mapped += map[c];
          p = std::move(mapped);
        }
        break;
      }
      case TextStep::kRequireNfc:
        for (const auto& p : pieces)
          if (st.regex->contains_match(p))
            fail(
                "{}: the text needs Unicode NFC normalization (it has combining marks or "
                "compatibility characters), which saelab does not implement",
                spec_.where);
        break;
      case TextStep::kMetaspace: {
        for (auto& p : pieces) replace_all(p, " ", st.a);
        for (size_t i = 0; i < pieces.size(); ++i) {
          bool prepend =
              st.prepend_scheme == "always" || (st.prepend_scheme == "first" && at_start && i == 0);
          if (prepend && !pieces[i].empty() && pieces[i].compare(0, st.a.size(), st.a) != 0)
            pieces[i] = st.a + pieces[i];
        }
        if (st.flag) pieces = split_pieces(pieces, st);
        break;
      }
    }
  }
  for (const auto& p : pieces)
    if (!p.empty()) encode_word(p, out);
}

void BpeTokenizer::encode_word(const std::string& word, std::vector<int64_t>& out) const {
  const bool cacheable = word.size() <= kCacheMaxWord;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int64_t> ids;
  auto whole = spec_.ignore_merges ? ids_.find(word) : ids_.end();
  if (whole != ids_.end()) {
    ids.push_back(whole->second);
  } else {
    std::string key;
    auto syms = merge_symbols(
        utf8_chars(word), [&](const std::string& a, const std::string& b) -> std::optional<double> {
          key.assign(a).push_back(kSep);
          key.append(b);
          auto it = ranks_.find(key);
          if (it == ranks_.end()) return std::nullopt;
          return it->second;
        });
    bool last_unk = false;
    for (const auto& s : syms) {
      auto it = ids_.find(s);
      if (it != ids_.end()) {
        ids.push_back(it->second);
        last_unk = false;
        continue;
      }
      bool bytes_ok = spec_.byte_fallback;
      if (bytes_ok)
        for (unsigned char c : s) bytes_ok = bytes_ok && byte_ids_[c] >= 0;
      if (bytes_ok) {
        for (unsigned char c : s) ids.push_back(byte_ids_[c]);
        last_unk = false;
      } else if (unk_id_) {
        if (!(spec_.fuse_unk && last_unk)) ids.push_back(*unk_id_);
        last_unk = true;
      } else {
        fail("{}: no token for '{}' (no byte fallback and no unk_token)", spec_.where, s);
      }
    }
  }
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kCacheMaxEntries) cache_.clear();
    cache_.emplace(word, std::move(ids));
  }
}

std::string BpeTokenizer::id_to_token(int64_t id) const {
  if (id < 0 || id >= vocab_size() || vocab_[id].empty())
    fail("{}: token id {} is not in the vocabulary (size {})", spec_.where, id, vocab_size());
  return vocab_[id];
}

std::optional<int64_t> BpeTokenizer::token_to_id(const std::string& token) const {
  auto it = ids_.find(token);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

std::string BpeTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) tokens.push_back(id_to_token(id));
  return run_decoder(std::move(tokens), spec_.decoder);
}

// Bytes of a byte-level token string; characters outside the byte map (added tokens such as
// CJK text) keep their own UTF-8 bytes, as HF's ByteLevel decoder does.
static void append_byte_level(const std::string& t, std::string& bytes) {
  for (size_t i = 0; i < t.size();) {
    size_t len = 1;
    uint32_t cp = utf8_decode(t, i, &len);
    if (auto b = unicode_to_byte(cp))
      bytes += static_cast<char>(*b);
    else
      bytes.append(t, i, len);
    i += len;
  }
}

std::string run_decoder(std::vector<std::string> tokens, const std::vector<DecodeStep>& steps) {
  for (const auto& st : steps) {
    switch (st.kind) {
      case DecodeStep::kByteLevel: {
        std::string bytes;
        for (const auto& t : tokens) append_byte_level(t, bytes);
        tokens = {utf8_lossy(bytes)};
        break;
      }
      case DecodeStep::kReplace:
        for (auto& t : tokens) replace_all(t, st.a, st.b);
        break;
      case DecodeStep::kByteFallback: {
        // Runs of <0xXX> tokens become their bytes if those are valid UTF-8, else one U+FFFD
        // per byte token (HF's ByteFallback decoder).
        std::vector<std::string> out;
        std::string run;
        size_t run_len = 0;
        auto flush = [&] {
          if (run_len == 0) return;
          if (utf8_invalid_at(run)) {
            for (size_t k = 0; k < run_len; ++k) out.push_back("\xEF\xBF\xBD");
          } else {
            out.push_back(run);
          }
          run.clear();
          run_len = 0;
        };
        for (auto& t : tokens) {
          if (auto b = parse_byte_token(t)) {
            run += static_cast<char>(*b);
            ++run_len;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(out);
        break;
      }
      case DecodeStep::kFuse: {
        std::string all;
        for (const auto& t : tokens) all += t;
        tokens = {all};
        break;
      }
      case DecodeStep::kStrip:
        for (auto& t : tokens) {
          int s = 0;
          while (s < st.start && t.compare(s * st.a.size(), st.a.size(), st.a) == 0) ++s;
          t.erase(0, s * st.a.size());
          int e = 0;
          while (e < st.stop && t.size() >= st.a.size() &&
                 t.compare(t.size() - st.a.size(), st.a.size(), st.a) == 0) {
            t.resize(t.size() - st.a.size());
            ++e;
          }
        }
        break;
      case DecodeStep::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          replace_all(tokens[i], st.a, " ");
          if (i == 0 && st.prepend && !tokens[i].empty() && tokens[i][0] == ' ')
            tokens[i].erase(0, 1);
        }
        break;
    }
  }
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

}  // namespace saelab::tok
