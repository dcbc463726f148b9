// The TensorBoard event file read back two independent ways: Debian's `protoc --decode_raw` on each
// record, and a protobuf reader written here from the wire-format spec. The framing reader here
// checks both masked CRC32Cs with its own bit-at-a-time CRC.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "saelab/log/tensorboard.h"
#include "test_util.h"

using namespace saelab;
namespace fs = std::filesystem;

namespace {

uint32_t ref_crc32c(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return ~c;
}
uint32_t ref_mask(uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; }

template <typename T>
T read_le(const std::string& s, size_t at) {
  T v;
  std::memcpy(&v, s.data() + at, sizeof(T));
  return v;
}

// TFRecord framing: u64 length, u32 masked crc(length bytes), data, u32 masked crc(data).
std::vector<std::string> read_records(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> out;
  size_t at = 0;
  while (at < all.size()) {
    EXPECT_LE(at + 12, all.size());
    uint64_t len = read_le<uint64_t>(all, at);
    EXPECT_EQ(read_le<uint32_t>(all, at + 8), ref_mask(ref_crc32c(all.substr(at, 8))));
    EXPECT_LE(at + 12 + len + 4, all.size());
    std::string data = all.substr(at + 12, len);
    EXPECT_EQ(read_le<uint32_t>(all, at + 12 + len), ref_mask(ref_crc32c(data)));
    out.push_back(data);
    at += 12 + len + 4;
  }
  return out;
}

// A minimal protobuf reader: field number -> list of raw values (varint as uint64 in `ints`,
// fixed64/fixed32 and length-delimited bytes in `bytes`).
struct Msg {
  std::multimap<int, uint64_t> ints;
  std::multimap<int, std::string> bytes;
  std::string one(int f) const {
    EXPECT_EQ(bytes.count(f), 1u) << "field " << f;
    auto it = bytes.find(f);
    return it == bytes.end() ? std::string() : it->second;
  }
  double dbl(int f) const { return read_le<double>(one(f), 0); }
};

uint64_t varint(const std::string& s, size_t& at) {
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    uint8_t b = uint8_t(s.at(at++));
    v |= uint64_t(b & 0x7F) << shift;
    if (!(b & 0x80)) return v;
  }
}

Msg parse(const std::string& s) {
  Msg m;
  size_t at = 0;
  while (at < s.size()) {
    uint64_t key = varint(s, at);
    int field = int(key >> 3), wire = int(key & 7);
    if (wire == 0)
      m.ints.emplace(field, varint(s, at));
    else if (wire == 1)
      m.bytes.emplace(field, s.substr(at, 8)), at += 8;
    else if (wire == 5)
      m.bytes.emplace(field, s.substr(at, 4)), at += 4;
    else if (wire == 2) {
      uint64_t n = varint(s, at);
      m.bytes.emplace(field, s.substr(at, n));
      at += n;
    } else {
      ADD_FAILURE() << "unexpected wire type " << wire;
      break;
    }
  }
  return m;
}

std::vector<double> packed_doubles(const std::string& s) {
  std::vector<double> out;
  for (size_t i = 0; i + 8 <= s.size(); i += 8) out.push_back(read_le<double>(s, i));
  return out;
}

std::string hex_bits(double d) {
  uint64_t u;
  std::memcpy(&u, &d, 8);
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%016llx", (unsigned long long)u);
  std::string s = buf;
  // protoc prints without leading zeros after 0x
  size_t nz = s.find_first_not_of('0', 2);
  return "0x" + (nz == std::string::npos ? std::string("0") : s.substr(nz));
}
std::string hex_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", u);
  return buf;
}

std::string only_event_file(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0)
      files.push_back(e.path().string());
  EXPECT_EQ(files.size(), 1u);
  return files.empty() ? "" : files[0];
}

}  // namespace

TEST(TensorBoard, FileNameFollowsTheConvention) {
  test::TempDir dir;
  TensorBoardWriter w(dir.path());
  std::string name = fs::path(w.path()).filename().string();
  EXPECT_TRUE(
      std::regex_match(name, std::regex(R"(events\.out\.tfevents\.\d{10}\.[^.].*\.\d+\.\d+)")))
      << name;
  EXPECT_EQ(only_event_file(dir.path()), w.path());
}

TEST(TensorBoard, RecordsDecodeWithOwnReader) {
  test::TempDir dir;
  std::vector<double> hist = {1.0, 2.0, 2.5, 4.0, 7.0, -1.0};
  {
    TensorBoardWriter w(dir.path());
    w.add_scalar("losses/mse_loss", 0.25, 10);
    w.add_scalar("metrics/l0", 12.5, 20);
    w.add_histogram("plots/feature_density_line_chart", hist, 30, 4);
    w.flush();
  }
  auto records = read_records(only_event_file(dir.path()));
  ASSERT_EQ(records.size(), 4u);

  Msg first = parse(records[0]);
  EXPECT_EQ(first.one(3), "brain.Event:2");
  EXPECT_GT(first.dbl(1), 1.6e9);  // a wall time in seconds

  struct Expect {
    int64_t step;
    std::string tag;
    float value;
  };
  std::vector<Expect> scalars = {{10, "losses/mse_loss", 0.25f}, {20, "metrics/l0", 12.5f}};
  for (size_t i = 0; i < scalars.size(); ++i) {
    Msg ev = parse(records[1 + i]);
    ASSERT_EQ(ev.ints.count(2), 1u);
    EXPECT_EQ(int64_t(ev.ints.find(2)->second), scalars[i].step);
    Msg summary = parse(ev.one(5));
    Msg value = parse(summary.one(1));
    EXPECT_EQ(value.one(1), scalars[i].tag);
    EXPECT_EQ(read_le<float>(value.one(2), 0), scalars[i].value);
  }

  Msg ev = parse(records[3]);
  EXPECT_EQ(int64_t(ev.ints.find(2)->second), 30);
  Msg value = parse(parse(ev.one(5)).one(1));
  EXPECT_EQ(value.one(1), "plots/feature_density_line_chart");
  Msg h = parse(value.one(5));
  double mn = 1e300, mx = -1e300, sum = 0, sq = 0;
  for (double x : hist) mn = std::min(mn, x), mx = std::max(mx, x), sum += x, sq += x * x;
  EXPECT_EQ(h.dbl(1), mn);
  EXPECT_EQ(h.dbl(2), mx);
  EXPECT_EQ(h.dbl(3), double(hist.size()));
  EXPECT_DOUBLE_EQ(h.dbl(4), sum);
  EXPECT_DOUBLE_EQ(h.dbl(5), sq);
  auto limits = packed_doubles(h.one(6));
  auto counts = packed_doubles(h.one(7));
  ASSERT_EQ(limits.size(), 4u);
  ASSERT_EQ(counts.size(), 4u);
  // 4 equal buckets over [-1, 7]: edges -1, 1, 3, 5, 7; value v goes to floor((v+1)/2), 7 to the
  // last.
  std::vector<double> want_limits = {1, 3, 5, 7}, want_counts = {0, 0, 0, 0};
  for (double x : hist) want_counts[std::min(3, int(std::floor((x + 1) / 2)))] += 1;
  for (int i = 0; i < 4; ++i) {
    EXPECT_DOUBLE_EQ(limits[i], want_limits[i]) << i;
    EXPECT_EQ(counts[i], want_counts[i]) << i;
  }
}

TEST(TensorBoard, RecordsDecodeWithProtocDecodeRaw) {
  if (test::run_command("protoc --version").rc != 0) GTEST_SKIP() << "protoc not installed";
  test::TempDir dir;
  {
    TensorBoardWriter w(dir.path());
    w.add_scalar("metrics/explained_variance", 0.875, 123456789);
    w.add_histogram("plots/feature_density_line_chart", {-3.0, -2.0, -2.0}, 7, 2);
  }
  auto records = read_records(only_event_file(dir.path()));
  ASSERT_EQ(records.size(), 3u);
  auto decode = [&](const std::string& rec, int i) {
    std::string f = dir / ("rec" + std::to_string(i) + ".bin");
    test::write_text(f, rec);
    auto r = test::run_command("sh -c " + test::shell_quote("protoc --decode_raw < " + f));
    EXPECT_EQ(r.rc, 0) << r.err;
    return r.out;
  };
  std::string d0 = decode(records[0], 0);
  EXPECT_NE(d0.find("3: \"brain.Event:2\""), std::string::npos) << d0;

  std::string d1 = decode(records[1], 1);
  EXPECT_NE(d1.find("\n2: 123456789\n"), std::string::npos) << d1;
  EXPECT_NE(d1.find("1: \"metrics/explained_variance\""), std::string::npos) << d1;
  EXPECT_NE(d1.find("2: " + hex_bits(0.875f)), std::string::npos) << d1;

  std::string d2 = decode(records[2], 2);
  EXPECT_NE(d2.find("\n2: 7\n"), std::string::npos) << d2;
  EXPECT_NE(d2.find("1: \"plots/feature_density_line_chart\""), std::string::npos) << d2;
  // HistogramProto min (1) = -3, max (2) = -2, num (3) = 3, sum (4) = -7, sum_squares (5) = 17.
  EXPECT_NE(d2.find("1: " + hex_bits(-3.0)), std::string::npos) << d2;
  EXPECT_NE(d2.find("2: " + hex_bits(-2.0)), std::string::npos) << d2;
  EXPECT_NE(d2.find("3: " + hex_bits(3.0)), std::string::npos) << d2;
  EXPECT_NE(d2.find("4: " + hex_bits(-7.0)), std::string::npos) << d2;
  EXPECT_NE(d2.find("5: " + hex_bits(17.0)), std::string::npos) << d2;
}
