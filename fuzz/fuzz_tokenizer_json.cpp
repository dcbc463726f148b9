// Hugging Face tokenizer.json through load_tokenizer (the one entry point the CLI uses), then a
// round of encode/decode on a fixed text: a file that loads must give a usable tokenizer, and
// encode/decode may only refuse with saelab::Error.
#include <sys/stat.h>

#include "fuzz_target.h"
#include "saelab/data/tokenizer.h"

SAELAB_FUZZ_TARGET(tokenizer_json) {
  static const std::string dir = [] {
    std::string d = saelab::fuzz::scratch_dir() + "/tokenizer_json";
    mkdir(d.c_str(), 0700);
    return d;
  }();
  std::string path = dir + "/tokenizer.json";
  saelab::fuzz::write_input(data, size, "tokenizer_json/tokenizer.json");
  auto tok = saelab::load_tokenizer(path);
  auto ids = tok->encode("Hello world, it's 2024!\n  <|endoftext|> caf\xc3\xa9 \xe2\x96\x81x");
  (void)tok->decode(ids);
  for (int64_t id = 0; id < tok->vocab_size() && id < 64; ++id) (void)tok->id_to_token(id);
}
