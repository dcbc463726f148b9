// SentencePiece tokenizer.model (protobuf ModelProto read by saelab's own wire-format reader), then
// a round of encode/decode on a fixed text.
#include "fuzz_target.h"
#include "saelab/data/tokenizer_sentencepiece.h"

SAELAB_FUZZ_TARGET(sentencepiece) {
  auto tok = saelab::tok::load_sentencepiece(
      std::string_view(reinterpret_cast<const char*>(data), size), "tokenizer.model");
  auto ids = tok->encode("Hello world, it's 2024!\n  caf\xc3\xa9 \xe2\x96\x81x <0x41>");
  (void)tok->decode(ids);
  for (int64_t id = 0; id < tok->vocab_size() && id < 64; ++id) (void)tok->id_to_token(id);
}
