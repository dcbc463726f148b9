// Lines of a text file that may be compressed: plain, gzip (.gz, several members read on, as
// `cat a.gz b.gz` makes) or Zstandard (.zst, several frames likewise), decompressed as a stream
// so memory stays at one buffer whatever the file size.
#pragma once
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace saelab {

class LineReader {
 public:
  // The codec is chosen by the file name's last extension (.gz, .zst, else plain).
  explicit LineReader(std::string path);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;
  // The next line without its '\n' (and a trailing '\r'); false at the end of the file.
  bool getline(std::string& line);

 private:
  struct Stream;
  bool fill();  // decompresses more bytes into buf_; false at the end
  std::string path_;
  std::FILE* f_ = nullptr;
  std::unique_ptr<Stream> z_;
  std::vector<char> in_;
  std::string buf_;
  size_t pos_ = 0;
  bool eof_ = false;
};

// True for names LineReader decompresses (x.gz, x.zst).
bool is_compressed_name(const std::string& path);

}  // namespace saelab
