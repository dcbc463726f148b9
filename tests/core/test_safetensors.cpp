// safetensors reader and writer: files built byte by byte from the spec, files from an independent
// Python writer (struct + json + numpy), round trips of every dtype, and every malformed case.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/core/safetensors.h"
#include "test_util.h"

using namespace saelab;

namespace {

std::string le64(uint64_t n) {
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return s;
}

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int x : b) s.push_back(static_cast<char>(x));
  return s;
}

// A file from the spec: u64 LE header length, the header JSON as written, the raw data.
std::string st_file(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

std::string write_bin(const test::TempDir& dir, const std::string& name, const std::string& b) {
  std::string p = dir / name;
  std::ofstream(p, std::ios::binary) << b;
  return p;
}

// Expects `f(path)` to throw saelab::Error naming the path and containing `fragment`.
template <typename F>
void expect_error(const std::string& path, const std::string& fragment, F f) {
  try {
    f(path);
    ADD_FAILURE() << "no error for " << path << " (expected '" << fragment << "')";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(path), std::string::npos) << m;
    EXPECT_NE(m.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

}  // namespace

TEST(Safetensors, ReadsFileBuiltByteByByteFromTheSpec) {
  test::TempDir dir;
  // Offsets laid out by hand: F64 first (8-aligned), then F32, I64, F16, BF16, U8, BOOL.
  std::string header = R"({"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},)"
                       R"("f":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
                       R"("i":{"dtype":"I64","shape":[1,1],"data_offsets":[16,24]},)"
                       R"("h":{"dtype":"F16","shape":[2],"data_offsets":[24,28]},)"
                       R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[28,32]},)"
                       R"("u":{"dtype":"U8","shape":[1],"data_offsets":[32,33]},)"
                       R"("t":{"dtype":"BOOL","shape":[2],"data_offsets":[33,35]},)"
                       R"("__metadata__":{"format":"pt"}})";
  while ((8 + header.size()) % 8) header += ' ';
  std::string data;
  data += bytes({0, 0, 0, 0, 0, 0, 0xD0, 0x3F});     // F64 0.25 = 0x3FD0000000000000
  data += bytes({0, 0, 0xC0, 0x3F, 0, 0, 0, 0xC0});  // F32 1.5 = 0x3FC00000, -2.0 = 0xC0000000
  data += bytes({0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF});  // I64 -3
  data += bytes({0x00, 0x3C, 0x00, 0xB8});  // F16 1.0 = 0x3C00, -0.5 = 0xB800
  data += bytes({0x80, 0x3F, 0x40, 0x40});  // BF16 1.0 = 0x3F80, 3.0 = 0x4040
  data += bytes({200});                     // U8
  data += bytes({1, 0});                    // BOOL true, false
  std::string path = write_bin(dir, "spec.safetensors", st_file(header, data));

  SafetensorsFile f(path);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"d", "f", "i", "h", "b", "u", "t"}));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  auto d = f.view("d");
  EXPECT_EQ(d.scalar_type(), at::kDouble);
  EXPECT_EQ(d[0].item<double>(), 0.25);
  auto fl = f.view("f");
  EXPECT_EQ(fl.scalar_type(), at::kFloat);
  EXPECT_EQ(fl[0].item<float>(), 1.5f);
  EXPECT_EQ(fl[1].item<float>(), -2.0f);
  auto i = f.tensor("i");
  EXPECT_EQ(i.sizes(), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(i.scalar_type(), at::kLong);
  EXPECT_EQ(i[0][0].item<int64_t>(), -3);
  auto h = f.view("h");
  EXPECT_EQ(h.scalar_type(), at::kHalf);
  EXPECT_EQ(h[0].item<float>(), 1.0f);
  EXPECT_EQ(h[1].item<float>(), -0.5f);
  auto b = f.view("b");
  EXPECT_EQ(b.scalar_type(), at::kBFloat16);
  EXPECT_EQ(b[0].item<float>(), 1.0f);
  EXPECT_EQ(b[1].item<float>(), 3.0f);
  auto u = f.view("u");
  EXPECT_EQ(u.scalar_type(), at::kByte);
  EXPECT_EQ(u[0].item<int>(), 200);
  auto t = f.view("t");
  EXPECT_EQ(t.scalar_type(), at::kBool);
  EXPECT_TRUE(t[0].item<bool>());
  EXPECT_FALSE(t[1].item<bool>());
}

TEST(Safetensors, UnsignedTypesWidenAndHugeU64IsRefused) {
  test::TempDir dir;
  std::string header = R"({"a":{"dtype":"U16","shape":[1],"data_offsets":[0,2]},)"
                       R"("b":{"dtype":"U32","shape":[1],"data_offsets":[2,6]},)"
                       R"("c":{"dtype":"U64","shape":[1],"data_offsets":[6,14]},)"
                       R"("z":{"dtype":"U64","shape":[1],"data_offsets":[14,22]}})";
  std::string data = bytes({0xFF, 0xFF}) + bytes({0x00, 0x28, 0x6B, 0xEE}) +  // 65535, 4e9
                     bytes({1, 0, 0, 0, 0, 0, 0, 0x7F}) +                     // 0x7F00000000000001
                     bytes({0, 0, 0, 0, 0, 0, 0, 0x80});                      // 2^63
  std::string path = write_bin(dir, "u.safetensors", st_file(header, data));
  SafetensorsFile f(path);
  EXPECT_EQ(f.view("a").scalar_type(), at::kInt);
  EXPECT_EQ(f.view("a")[0].item<int64_t>(), 65535);
  EXPECT_EQ(f.view("b").scalar_type(), at::kLong);
  EXPECT_EQ(f.view("b")[0].item<int64_t>(), 4000000000LL);
  EXPECT_EQ(f.view("c")[0].item<int64_t>(), (int64_t{0x7F} << 56) + 1);
  expect_error(path, "does not fit", [&](const std::string&) { f.tensor("z"); });
}

TEST(Safetensors, RoundTripsEveryTorchDtype) {
  test::TempDir dir;
  torch::manual_seed(0);
  NamedTensors in;
  in.emplace_back("f32", torch::randn({3, 5}));
  in.emplace_back("f64", torch::randn({4}, torch::kDouble));
  in.emplace_back("f16", torch::randn({2, 3}).to(torch::kHalf));
  in.emplace_back("bf16", torch::randn({7}).to(torch::kBFloat16));
  in.emplace_back("i64", torch::randint(-1000000, 1000000, {5}, torch::kLong));
  in.emplace_back("i32", torch::randint(-100000, 100000, {2, 2}, torch::kInt));
  in.emplace_back("i16", torch::randint(-30000, 30000, {3}, torch::kShort));
  in.emplace_back("i8", torch::randint(-128, 127, {3}, torch::kChar));
  in.emplace_back("u8", torch::randint(0, 255, {3}, torch::kByte));
  in.emplace_back("bool", torch::rand({6}) > 0.5);
  in.emplace_back("empty", torch::zeros({0, 4}));
  in.emplace_back("scalar", torch::tensor(2.5));
  in.emplace_back("transposed", torch::arange(12, torch::kFloat).reshape({3, 4}).t());
  std::string path = dir / "rt.safetensors";
  save_safetensors(path, in, {{"k", "v"}});

  std::string raw = read_file(path);
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u) << "header padded to 8 bytes";

  SafetensorsFile f(path);
  EXPECT_EQ(f.metadata().at("k"), "v");
  std::vector<std::string> want;
  for (auto& [name, t] : in) want.push_back(name);
  // Data order is the given order, except that zero-size tensors sort before others at the same
  // offset; compare as sets plus per-tensor equality.
  auto got = f.names();
  std::sort(got.begin(), got.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(got, want);
  auto loaded = load_safetensors(path);
  for (auto& [name, t] : in) {
    ASSERT_TRUE(loaded.count(name)) << name;
    EXPECT_EQ(loaded[name].scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(loaded[name].sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(loaded[name], t)) << name;
    EXPECT_TRUE(torch::equal(f.view(name), t)) << name;
  }
  // The transposed input was written in its logical (row-major) order.
  EXPECT_EQ(loaded["transposed"][0][1].item<float>(), 4.0f);
}

TEST(Safetensors, ViewIsZeroCopyAndOutlivesTheFileObject) {
  test::TempDir dir;
  std::string path = dir / "v.safetensors";
  save_safetensors(path, {{"x", torch::arange(6, torch::kFloat)}});
  at::Tensor v;
  {
    SafetensorsFile f(path);
    v = f.view("x");
    EXPECT_EQ(f.view("x").data_ptr(), v.data_ptr());  // same mapped bytes
    EXPECT_NE(f.tensor("x").data_ptr(), v.data_ptr());
  }
  EXPECT_EQ(v[5].item<float>(), 5.0f);  // mapping still alive
  v.add_(1);                            // private copy-on-write: file untouched
  EXPECT_EQ(load_safetensors(path)["x"][5].item<float>(), 5.0f);
}

TEST(Safetensors, WriterIsAtomicAndRefusesDuplicateNames) {
  test::TempDir dir;
  std::string path = dir / "a.safetensors";
  save_safetensors(path, {{"x", torch::ones({2})}});
  EXPECT_THROW(save_safetensors(path, {{"x", torch::ones({2})}, {"x", torch::zeros({2})}}), Error);
  EXPECT_THROW(save_safetensors(path, {{"__metadata__", torch::ones({2})}}), Error);
  EXPECT_TRUE(torch::equal(load_safetensors(path)["x"], torch::ones({2})));
}

TEST(Safetensors, MissingTensorNamesFileAndTensor) {
  test::TempDir dir;
  std::string path = dir / "m.safetensors";
  save_safetensors(path, {{"W_enc", torch::ones({2})}});
  SafetensorsFile f(path);
  EXPECT_TRUE(f.contains("W_enc"));
  EXPECT_FALSE(f.contains("W_dec"));
  expect_error(path, "'W_dec'", [&](const std::string&) { f.view("W_dec"); });
}

TEST(Safetensors, ReadsFileFromIndependentPythonWriter) {
  if (!test::python_has("numpy")) GTEST_SKIP() << "/usr/bin/python3 has no numpy";
  test::TempDir dir;
  std::string path = dir / "py.safetensors";
  // Header deliberately NOT padded (odd length), so the data is unaligned and view() must copy.
  test::run_python(R"PY(
import json, struct, numpy as np
a = (np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5) / 4
b = np.array([-(2**40), 7, 0], dtype=np.int64)
h = np.array([0.125, -1024.0], dtype=np.float16)
bf = (np.array([1.5, -0.15625, 3.0e5], dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
d = np.array([[1e-300, -2.0]], dtype=np.float64)
parts = [("A", "F32", a), ("B", "I64", b), ("H", "F16", h), ("BF", "BF16", bf), ("D", "F64", d)]
header, data, off = {"__metadata__": {"src": "python"}}, b"", 0
for name, dt, arr in parts:
    raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
    data += raw
    off += len(raw)
hj = json.dumps(header).encode()
if (8 + len(hj)) % 2 == 0:
    hj += b" "
open(")PY" + path + R"PY(", "wb").write(struct.pack("<Q", len(hj)) + hj + data)
)PY");
  SafetensorsFile f(path);
  EXPECT_EQ(f.metadata().at("src"), "python");
  auto a = f.view("A");
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(a.flatten()[i].item<float>(), (i - 2.5f) / 4) << i;
  auto b = f.tensor("B");
  EXPECT_EQ(b[0].item<int64_t>(), -(int64_t{1} << 40));
  EXPECT_EQ(b[1].item<int64_t>(), 7);
  auto h = f.view("H");
  EXPECT_EQ(h[0].item<float>(), 0.125f);
  EXPECT_EQ(h[1].item<float>(), -1024.0f);
  auto bf = f.view("BF");
  EXPECT_EQ(bf.scalar_type(), at::kBFloat16);
  EXPECT_EQ(bf[0].item<float>(), 1.5f);
  EXPECT_EQ(bf[1].item<float>(), -0.15625f);
  EXPECT_EQ(bf[2].item<float>(), 299008.0f);  // 3e5 truncated to bf16's 8-bit mantissa
  auto d = f.view("D");
  EXPECT_EQ(d[0][0].item<double>(), 1e-300);
  EXPECT_EQ(d[0][1].item<double>(), -2.0);
}

namespace {
struct Bad {
  const char* label;
  std::string bytes;
  const char* fragment;
};

std::string tensor_json(const std::string& name, const std::string& dtype, const std::string& shape,
                        uint64_t b, uint64_t e) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":[" + std::to_string(b) + "," + std::to_string(e) + "]}";
}
}  // namespace

TEST(Safetensors, MalformedFilesGiveErrorsNamingFileAndFault) {
  test::TempDir dir;
  std::string ok_header = "{" + tensor_json("x", "F32", "[2]", 0, 8) + "}";
  std::string ok = st_file(ok_header, std::string(8, '\0'));
  std::vector<Bad> cases = {
      {"empty", "", "shorter than the 8-byte"},
      {"short", "abc", "shorter than the 8-byte"},
      {"truncated", ok.substr(0, ok.size() - 3), "out of range"},
      {"header_beyond", le64(1000) + "{}", "beyond the end"},
      {"header_10gb", le64(10ull * 1000 * 1000 * 1000) + "{}", "100 MB"},
      {"header_max", le64(~0ull) + "{}", "100 MB"},
      {"bad_json", st_file("{\"x\": {", ""), "not valid JSON"},
      {"not_object", st_file("[1, 2]", ""), "must be a JSON object"},
      {"unknown_dtype",
       st_file("{" + tensor_json("x", "F33", "[2]", 0, 8) + "}", std::string(8, 0)),
       "unknown dtype 'F33'"},
      {"size_mismatch",
       st_file("{" + tensor_json("x", "F32", "[3]", 0, 8) + "}", std::string(8, 0)), "needs 12"},
      {"out_of_range",
       st_file("{" + tensor_json("x", "F32", "[2]", 0, 8) + "," +
                   tensor_json("y", "F32", "[2]", 8, 16) + "}",
               std::string(12, 0)),
       "out of range"},
      {"overlap",
       st_file("{" + tensor_json("x", "F32", "[2]", 0, 8) + "," +
                   tensor_json("y", "F32", "[2]", 4, 12) + "}",
               std::string(12, 0)),
       "overlap"},
      {"gap",
       st_file("{" + tensor_json("x", "F32", "[1]", 0, 4) + "," +
                   tensor_json("y", "F32", "[1]", 8, 12) + "}",
               std::string(12, 0)),
       "gap"},
      {"trailing", st_file(ok_header, std::string(9, '\0')), "trailing bytes"},
      {"begin_after_end",
       st_file("{" + tensor_json("x", "F32", "[0]", 8, 0) + "}", std::string(8, 0)),
       "end before begin"},
      {"negative_dim",
       st_file("{" + tensor_json("x", "F32", "[-2]", 0, 8) + "}", std::string(8, 0)),
       "non-negative integers"},
      {"float_dim", st_file("{" + tensor_json("x", "F32", "[2.0]", 0, 8) + "}", std::string(8, 0)),
       "non-negative integers"},
      {"overflow_shape",
       st_file("{" + tensor_json("x", "F32", "[4294967296,4294967296]", 0, 8) + "}",
               std::string(8, 0)),
       "overflows"},
      {"duplicate",
       st_file("{" + tensor_json("x", "F32", "[1]", 0, 4) + "," +
                   tensor_json("x", "F32", "[1]", 4, 8) + "}",
               std::string(8, 0)),
       "twice"},
      {"metadata_not_strings", st_file(R"({"__metadata__":{"a":1}})", ""), "must be a string"},
      {"offsets_not_pair",
       st_file(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", std::string(4, 0)),
       "[begin, end]"},
      {"deep_nesting", st_file(std::string(100, '[') + std::string(100, ']'), ""), "deeper"},
      {"bool_byte", st_file("{" + tensor_json("x", "BOOL", "[1]", 0, 1) + "}", std::string(1, 7)),
       "0 or 1"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    std::string path = write_bin(dir, std::string(c.label) + ".safetensors", c.bytes);
    expect_error(path, c.fragment, [](const std::string& p) { load_safetensors(p); });
  }
  expect_error(dir / "nonexistent.safetensors", "cannot open",
               [](const std::string& p) { SafetensorsFile f(p); });
}

TEST(Safetensors, ZeroSizeTensorsAndEmptyDataAreLegal) {
  test::TempDir dir;
  std::string path = write_bin(dir, "z.safetensors",
                               st_file("{" + tensor_json("a", "F32", "[0,3]", 0, 0) + "," +
                                           tensor_json("b", "I64", "[0]", 0, 0) + "}",
                                       ""));
  auto m = load_safetensors(path);
  EXPECT_EQ(m["a"].sizes(), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(m["b"].numel(), 0);
  std::string only_meta = write_bin(dir, "meta.safetensors", st_file(R"({"__metadata__":{}})", ""));
  EXPECT_TRUE(SafetensorsFile(only_meta).names().empty());
}

TEST(Safetensors, Float8ParsesAndMapsOnlyWhereLibTorchHasIt) {
  test::TempDir dir;
  std::string path = write_bin(dir, "f8.safetensors",
                               st_file("{" + tensor_json("x", "F8_E4M3", "[2]", 0, 2) + "}",
                                       bytes({0x38, 0xC0})));  // e4m3fn: 1.0, -2.0
  SafetensorsFile f(path);
  EXPECT_EQ(f.entry("x").dtype, StDtype::F8_E4M3);
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  at::Tensor t = f.tensor("x").to(at::kFloat);
  EXPECT_EQ(t[0].item<float>(), 1.0f);
  EXPECT_EQ(t[1].item<float>(), -2.0f);
#else
  expect_error(path, "unsupported in LibTorch", [&](const std::string&) { f.view("x"); });
#endif
}
