// SentencePiece tokenizer.model files (Gemma, Llama-2), read without libsentencepiece (its
// protobuf-lite clashes with LibTorch's libprotobuf at load time; see CMakeLists.txt): a small
// protobuf reader for ModelProto, BPE encoding by merged-piece score and Unigram encoding by
// Viterbi, byte fallback, and SentencePiece's decoding rules.
#pragma once
#include <memory>
#include <string>
#include <string_view>

#include "saelab/data/tokenizer.h"

namespace saelab::tok {

// Parses the bytes of a tokenizer.model (`where` names it in errors).
std::unique_ptr<Tokenizer> load_sentencepiece(std::string_view bytes, const std::string& where);
std::unique_ptr<Tokenizer> load_sentencepiece_file(const std::string& path);

}  // namespace saelab::tok
