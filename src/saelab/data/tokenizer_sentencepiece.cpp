// SentencePiece tokenizer.model reader and encoder (tokenizer_sentencepiece.h). Field numbers are
// those of sentencepiece_model.proto: ModelProto {1: pieces, 2: trainer_spec, 3: normalizer_spec},
// SentencePiece {1: piece, 2: score, 3: type}, TrainerSpec {3: model_type, 24:
// treat_whitespace_as_suffix, 35: byte_fallback, 40-43: unk/bos/eos/pad id}, NormalizerSpec
// {1: name, 2: precompiled_charsmap, 3: add_dummy_prefix, 4: remove_extra_whitespaces,
// 5: escape_whitespaces}.
#include "saelab/data/tokenizer_sentencepiece.h"

#include <algorithm>
#include <cfloat>
#include <cstring>
#include <functional>
#include <unordered_map>

#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/data/tokenizer_bpe.h"
#include "saelab/data/tokenizer_merge.h"
#include "saelab/data/tokenizer_unicode.h"

namespace saelab::tok {
namespace {

enum PieceType {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6
};
enum ModelType { kUnigram = 1, kBpe = 2 };
const char* const kSpace = "\u2581";         // "▁"
const char* const kUnkSurface = " \u2047 ";  // SentencePiece's default unk_surface " ⁇ "

// Protocol-buffer wire format: a key varint (field << 3 | wire type), then the value.
class ProtoReader {
 public:
  ProtoReader(std::string_view data, const std::string& where) : d_(data), where_(where) {}
  bool done() const { return pos_ >= d_.size(); }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= d_.size()) fail("{}: truncated protobuf varint at byte {}", where_, pos_);
      auto b = static_cast<uint8_t>(d_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("{}: protobuf varint longer than 10 bytes at byte {}", where_, pos_);
  }
  void key(uint32_t* field, uint32_t* wire) {
    uint64_t k = varint();
    *field = static_cast<uint32_t>(k >> 3);
    *wire = static_cast<uint32_t>(k & 7);
  }
  std::string_view bytes() {
    uint64_t n = varint();
    if (n > d_.size() - pos_)
      fail("{}: truncated protobuf: a field of {} bytes runs past the end at byte {}", where_, n,
           pos_);
    auto v = d_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  float fixed32_float() {
    if (d_.size() - pos_ < 4) fail("{}: truncated protobuf fixed32 at byte {}", where_, pos_);
    uint32_t u = 0;
    for (int k = 0; k < 4; ++k)
      u |= static_cast<uint32_t>(static_cast<uint8_t>(d_[pos_ + k])) << (8 * k);
    pos_ += 4;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case 0:
        varint();
        break;
      case 1:
        advance(8);
        break;
      case 2:
        bytes();
        break;
      case 5:
        advance(4);
        break;
      default:
        fail("{}: unsupported protobuf wire type {} at byte {} (not a tokenizer.model?)", where_,
             wire, pos_);
    }
  }
  void expect(uint32_t wire, uint32_t want, const char* what) {
    if (wire != want)
      fail("{}: protobuf field {} has wire type {}, expected {} (not a tokenizer.model?)", where_,
           what, wire, want);
  }

 private:
  void advance(size_t n) {
    if (d_.size() - pos_ < n) fail("{}: truncated protobuf at byte {}", where_, pos_);
    pos_ += n;
  }
  std::string_view d_;
  const std::string& where_;
  size_t pos_ = 0;
};

struct Piece {
  std::string text;
  float score = 0;
  int type = kNormal;
};

struct SpModel {
  std::vector<Piece> pieces;
  int model_type = kUnigram;
  bool byte_fallback = false, treat_ws_as_suffix = false;
  int64_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
  std::string norm_name;
  bool has_charsmap = false;
  bool add_dummy_prefix = true, remove_extra_whitespaces = true, escape_whitespaces = true;
};

SpModel parse_model(std::string_view bytes, const std::string& where) {
  SpModel m;
  ProtoReader r(bytes, where);
  uint32_t f, w;
  while (!r.done()) {
    r.key(&f, &w);
    if (f == 1) {
      r.expect(w, 2, "pieces");
      ProtoReader p(r.bytes(), where);
      Piece piece;
      while (!p.done()) {
        p.key(&f, &w);
        if (f == 1) {
          p.expect(w, 2, "piece");
          piece.text = std::string(p.bytes());
        } else if (f == 2) {
          p.expect(w, 5, "score");
          piece.score = p.fixed32_float();
        } else if (f == 3) {
          p.expect(w, 0, "type");
          piece.type = static_cast<int>(p.varint());
        } else
          p.skip(w);
      }
      m.pieces.push_back(std::move(piece));
    } else if (f == 2) {
      r.expect(w, 2, "trainer_spec");
      ProtoReader t(r.bytes(), where);
      while (!t.done()) {
        t.key(&f, &w);
        // int32 fields: negative values are 10-byte varints; the low 32 bits are the value.
        auto i32 = [&] {
          t.expect(w, 0, "trainer_spec int");
          return static_cast<int64_t>(static_cast<int32_t>(t.varint()));
        };
        if (f == 3)
          m.model_type = static_cast<int>(i32());
        else if (f == 24)
          m.treat_ws_as_suffix = i32() != 0;
        else if (f == 35)
          m.byte_fallback = i32() != 0;
        else if (f == 40)
          m.unk_id = i32();
        else if (f == 41)
          m.bos_id = i32();
        else if (f == 42)
          m.eos_id = i32();
        else if (f == 43)
          m.pad_id = i32();
        else
          t.skip(w);
      }
    } else if (f == 3) {
      r.expect(w, 2, "normalizer_spec");
      ProtoReader n(r.bytes(), where);
      while (!n.done()) {
        n.key(&f, &w);
        if (f == 1) {
          n.expect(w, 2, "name");
          m.norm_name = std::string(n.bytes());
        } else if (f == 2) {
          n.expect(w, 2, "precompiled_charsmap");
          m.has_charsmap = !n.bytes().empty();
        } else if (f == 3) {
          n.expect(w, 0, "add_dummy_prefix");
          m.add_dummy_prefix = n.varint() != 0;
        } else if (f == 4) {
          n.expect(w, 0, "remove_extra_whitespaces");
          m.remove_extra_whitespaces = n.varint() != 0;
        } else if (f == 5) {
          n.expect(w, 0, "escape_whitespaces");
          m.escape_whitespaces = n.varint() != 0;
        } else
          n.skip(w);
      }
    } else {
      r.skip(w);
    }
  }
  if (m.pieces.empty())
    fail("{}: no pieces in this SentencePiece model (not a tokenizer.model?)", where);
  if (m.model_type != kUnigram && m.model_type != kBpe)
    fail("{}: SentencePiece model_type {} is not supported (supported: 1 UNIGRAM, 2 BPE)", where,
         m.model_type);
  if (m.has_charsmap || (!m.norm_name.empty() && m.norm_name != "identity"))
    fail(
        "{}: normalizer '{}' with a precompiled charsmap is not supported (only 'identity', as "
        "Gemma and Llama use)",
        where, m.norm_name);
  if (m.treat_ws_as_suffix) fail("{}: treat_whitespace_as_suffix is not supported", where);
  auto n = static_cast<int64_t>(m.pieces.size());
  for (int64_t id : {m.unk_id, m.bos_id, m.eos_id, m.pad_id})
    if (id >= n)
      fail("{}: special token id {} is outside the vocabulary of {} pieces", where, id, n);
  return m;
}

class SentencePieceTokenizer : public Tokenizer {
 public:
  SentencePieceTokenizer(SpModel m, std::string where)
      : m_(std::move(m)), where_(std::move(where)) {
    float min_s = FLT_MAX, max_s = -FLT_MAX;
    for (size_t i = 0; i < m_.pieces.size(); ++i) {
      const auto& p = m_.pieces[i];
      auto id = static_cast<int64_t>(i);
      all_.emplace(p.text, id);
      if (p.type == kNormal || p.type == kUnused || p.type == kUserDefined) {
        pieces_.emplace(p.text, id);
        max_len_ = std::max(max_len_, p.text.size());
      }
      if (p.type == kNormal) {
        min_s = std::min(min_s, p.score);
        max_s = std::max(max_s, p.score);
      }
      if (p.type == kControl || p.type == kUnknown) specials_.push_back({p.text, id, true});
      if (p.type == kUserDefined) user_defined_.push_back(p.text);
    }
    min_score_ = min_s == FLT_MAX ? 0 : min_s;
    max_score_ = max_s == -FLT_MAX ? 0 : max_s;
    special_matcher_ = AddedTokenMatcher(specials_);
    std::stable_sort(
        user_defined_.begin(), user_defined_.end(),
        [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    byte_ids_.assign(256, -1);
    for (int b = 0; b < 256; ++b) {
      auto it = all_.find(byte_token(static_cast<uint8_t>(b)));
      if (it != all_.end() && m_.pieces[it->second].type == kByte) byte_ids_[b] = it->second;
    }
    SpecialTokens s;
    auto opt = [](int64_t id) { return id >= 0 ? std::optional<int64_t>(id) : std::nullopt; };
    s.bos = opt(m_.bos_id);
    s.eos = opt(m_.eos_id);
    s.pad = opt(m_.pad_id);
    s.unk = opt(m_.unk_id);
    set_special_tokens(s);
    set_adds_bos_by_default(m_.bos_id >= 0);  // SentencePiece-based HF tokenizers add BOS
  }

  std::vector<int64_t> encode(const std::string& text) const override {
    require_utf8(text, where_ + ": encode");
    std::vector<int64_t> out;
    for (const auto& seg : special_matcher_.split(text)) {
      if (seg.id >= 0)
        out.push_back(seg.id);
      else
        encode_segment(seg.text, out);
    }
    return out;
  }

  std::string decode(const std::vector<int64_t>& ids) const override {
    std::string out, bytes;
    bool first = true;
    auto flush_bytes = [&] {
      out += utf8_lossy(bytes);
      bytes.clear();
    };
    for (int64_t id : ids) {
      const auto& p = m_.pieces[checked(id)];
      if (p.type == kByte) {
        bytes += static_cast<char>(*parse_byte_token(p.text));
        first = false;
        continue;
      }
      flush_bytes();
      if (p.type == kControl) continue;
      std::string t = p.type == kUnknown ? kUnkSurface : p.text;
      if (m_.escape_whitespaces) {
        size_t pos = 0;
        while ((pos = t.find(kSpace, pos)) != std::string::npos) t.replace(pos, 3, " ");
      }
      // The dummy prefix added when encoding is removed from the first piece.
      if (first && m_.add_dummy_prefix && !t.empty() && t[0] == ' ') t.erase(0, 1);
      first = false;
      out += t;
    }
    flush_bytes();
    return out;
  }

  std::string id_to_token(int64_t id) const override { return m_.pieces[checked(id)].text; }
  std::optional<int64_t> token_to_id(const std::string& token) const override {
    auto it = all_.find(token);
    if (it == all_.end()) return std::nullopt;
    return it->second;
  }
  int64_t vocab_size() const override { return static_cast<int64_t>(m_.pieces.size()); }
  std::string kind() const override {
    return m_.model_type == kBpe ? "sentencepiece-bpe" : "sentencepiece-unigram";
  }

 private:
  size_t checked(int64_t id) const {
    if (id < 0 || id >= vocab_size())
      fail("{}: token id {} is not in the vocabulary (size {})", where_, id, vocab_size());
    return static_cast<size_t>(id);
  }

  bool is_user_defined(const std::string& p) const {
    if (user_defined_.empty()) return false;
    auto it = pieces_.find(p);
    return it != pieces_.end() && m_.pieces[it->second].type == kUserDefined;
  }

  // SentencePiece's identity normalizer: optional whitespace cleanup, dummy prefix, ' ' -> '▁'.
  std::string normalize(std::string_view text) const {
    std::string s(text);
    if (m_.remove_extra_whitespaces) {
      std::string t;
      for (char c : s) {
        if (c == ' ' && (t.empty() || t.back() == ' ')) continue;
        t += c;
      }
      while (!t.empty() && t.back() == ' ') t.pop_back();
      s = std::move(t);
    }
    if (s.empty()) return s;
    if (m_.add_dummy_prefix) s = " " + s;
    if (m_.escape_whitespaces) {
      std::string t;
      for (char c : s) {
        if (c == ' ')
          t += kSpace;
        else
          t += c;
      }
      s = std::move(t);
    }
    return s;
  }

  // Characters, with user-defined pieces kept whole (longest match), as SentencePiece splits.
  std::vector<std::string> initial_symbols(const std::string& s) const {
    std::vector<std::string> out;
    for (size_t i = 0; i < s.size();) {
      size_t n = 0;
      for (const auto& u : user_defined_)
        if (s.compare(i, u.size(), u) == 0) {
          n = u.size();
          break;
        }
      if (n == 0) n = std::min(utf8_len(static_cast<unsigned char>(s[i])), s.size() - i);
      out.push_back(s.substr(i, n));
      i += n;
    }
    return out;
  }

  void emit(const std::string& piece, std::vector<int64_t>& out, bool* last_unk) const {
    auto it = pieces_.find(piece);
    if (it != pieces_.end() && m_.pieces[it->second].type != kUnused) {
      out.push_back(it->second);
      *last_unk = false;
      return;
    }
    if (m_.byte_fallback) {
      bool ok = true;
      for (unsigned char c : piece) ok = ok && byte_ids_[c] >= 0;
      if (ok) {
        for (unsigned char c : piece) out.push_back(byte_ids_[c]);
        *last_unk = false;
        return;
      }
    }
    if (!*last_unk) out.push_back(m_.unk_id);  // runs of unknown pieces become one unk
    *last_unk = true;
  }

  void encode_segment(std::string_view text, std::vector<int64_t>& out) const {
    std::string s = normalize(text);
    if (s.empty()) return;
    bool last_unk = false;
    if (m_.model_type == kBpe) {
      // Merge the adjacent pair whose concatenation is the highest-scoring piece (leftmost on
      // ties); a merge into an UNUSED piece is allowed and undone afterwards (resegment).
      std::unordered_map<std::string, std::pair<std::string, std::string>> unused_merges;
      auto syms =
          merge_symbols(initial_symbols(s),
                        [&](const std::string& a, const std::string& b) -> std::optional<double> {
                          if (is_user_defined(a) || is_user_defined(b))
                            return std::nullopt;  // frozen symbols
                          auto it = pieces_.find(a + b);
                          if (it == pieces_.end() || m_.pieces[it->second].type == kUserDefined)
                            return std::nullopt;
                          if (m_.pieces[it->second].type == kUnused)
                            unused_merges.emplace(a + b, std::make_pair(a, b));
                          return -static_cast<double>(m_.pieces[it->second].score);
                        });
      std::function<void(const std::string&)> resegment = [&](const std::string& p) {
        auto it = unused_merges.find(p);
        auto id = pieces_.find(p);
        if (it != unused_merges.end() && id != pieces_.end() &&
            m_.pieces[id->second].type == kUnused) {
          resegment(it->second.first);
          resegment(it->second.second);
        } else {
          emit(p, out, &last_unk);
        }
      };
      for (const auto& p : syms) resegment(p);
      return;
    }
    encode_unigram(s, out, &last_unk);
  }

  // Viterbi over character positions: the segmentation with the highest total piece score.
  // A position with no one-character piece gets an unknown node scored min_score - 10.
  void encode_unigram(const std::string& s, std::vector<int64_t>& out, bool* last_unk) const {
    const size_t n = s.size();
    std::vector<double> best(n + 1, -1e300);
    std::vector<size_t> from(n + 1, 0);
    std::vector<char> reached(n + 1, 0);
    reached[0] = 1;
    best[0] = 0;
    const double unk_score = min_score_ - 10.0;
    for (size_t i = 0; i < n; ++i) {
      if (!reached[i]) continue;
      size_t ch = std::min(utf8_len(static_cast<unsigned char>(s[i])), n - i);
      bool single = false;
      size_t chars = 0;
      for (size_t j = i; j < n && j - i < max_len_;) {
        j += std::min(utf8_len(static_cast<unsigned char>(s[j])), n - j);
        ++chars;
        auto it = pieces_.find(s.substr(i, j - i));
        if (it == pieces_.end()) continue;
        const auto& p = m_.pieces[it->second];
        if (p.type == kUnused) continue;
        if (j - i == ch) single = true;
        double sc = p.type == kUserDefined ? chars * max_score_ - 0.1 : p.score;
        if (!reached[j] || best[i] + sc > best[j]) {
          best[j] = best[i] + sc;
          from[j] = i;
          reached[j] = 1;
        }
      }
      if (!single && (!reached[i + ch] || best[i] + unk_score > best[i + ch])) {
        best[i + ch] = best[i] + unk_score;
        from[i + ch] = i;
        reached[i + ch] = 1;
      }
    }
    std::vector<std::string> pieces;
    for (size_t j = n; j > 0; j = from[j]) pieces.push_back(s.substr(from[j], j - from[j]));
    std::reverse(pieces.begin(), pieces.end());
    for (const auto& p : pieces) emit(p, out, last_unk);
  }

  SpModel m_;
  std::string where_;
  std::unordered_map<std::string, int64_t> all_;     // every piece
  std::unordered_map<std::string, int64_t> pieces_;  // NORMAL, UNUSED, USER_DEFINED
  std::vector<AddedToken> specials_;                 // CONTROL and UNKNOWN, split out of text
  AddedTokenMatcher special_matcher_;
  std::vector<std::string> user_defined_;
  std::vector<int64_t> byte_ids_;
  size_t max_len_ = 1;
  float min_score_ = 0, max_score_ = 0;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece(std::string_view bytes, const std::string& where) {
  return std::make_unique<SentencePieceTokenizer>(parse_model(bytes, where), where);
}

std::unique_ptr<Tokenizer> load_sentencepiece_file(const std::string& path) {
  return load_sentencepiece(read_file(path), path);
}

}  // namespace saelab::tok
