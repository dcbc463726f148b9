// .npy / .npz reader against files written by Debian's python3-numpy (np.save, np.savez,
// np.savez_compressed, big-endian, Fortran order, 0-d, format versions 1-3); expected values are
// printed by the same Python script.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <random>

#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/core/npy.h"
#include "test_util.h"

using namespace saelab;

namespace {

// Writes fixtures into `dir` and returns {file: {"values": [...], "shape": [...]}} from Python.
json write_fixtures(const std::string& dir) {
  std::string out = test::run_python(R"PY(
import json, zipfile, numpy as np
d = ")PY" + dir + R"PY("
res = {}
def rec(name, a):
    flat = a.flatten(order="C").tolist()
    res[name] = {"shape": list(a.shape), "values": flat, "kind": a.dtype.kind}
def ints(dt):
    i = np.iinfo(dt)
    hi = min(int(i.max), 2**63 - 1)
    return [int(i.min), int(i.min) + 1, 0, 1, hi - 1, hi]
for code in ["b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"]:
    for order in "<>":
        if code in ("b1", "i1", "u1") and order == ">":
            continue
        dt = np.dtype(order + code if code[1] != "1" else "|" + code)
        if code == "b1":
            vals = [True, False, True, True, False, True]
        elif code[0] in "iu":
            vals = ints(dt)
        else:
            vals = [-1.5, 0.0, 1.0 / 3.0, 65504.0, 1e-3, -7.0]
        a = np.array(vals).astype(dt).reshape(2, 3)
        assert a.dtype.str == dt.str
        name = "%s_%s.npy" % (code, "be" if order == ">" else "le")
        np.save(d + "/" + name, a)
        rec(name, a)
f = np.asfortranarray((np.arange(24, dtype=np.float32) * 0.5 - 3).reshape(2, 3, 4))
np.save(d + "/fortran.npy", f)
rec("fortran.npy", f)
g = np.asfortranarray(np.arange(6, dtype=">i4").reshape(3, 2))
np.save(d + "/fortran_be.npy", g)
rec("fortran_be.npy", g)
s = np.array(3.25)
np.save(d + "/scalar.npy", s)
rec("scalar.npy", s)
e = np.zeros((0, 5), dtype=np.float32)
np.save(d + "/empty.npy", e)
rec("empty.npy", e)
for v in [(2, 0), (3, 0)]:
    a = np.linspace(-1, 1, 10).reshape(5, 2)
    name = "v%d.npy" % v[0]
    with open(d + "/" + name, "wb") as fh:
        np.lib.format.write_array(fh, a, version=v)
    rec(name, a)
w = np.random.RandomState(0).randn(4, 3).astype(np.float32)
b = np.arange(3, dtype=np.float32)
np.savez(d + "/plain.npz", W_enc=w, b_dec=b)
np.savez_compressed(d + "/compressed.npz", W_enc=w, threshold=b * 2)
rec("W_enc", w); rec("b_dec", b); rec("threshold", b * 2)
res["compress_types"] = [i.compress_type for i in zipfile.ZipFile(d + "/compressed.npz").infolist()]
np.save(d + "/u8_huge.npy", np.array([2**64 - 1], dtype="<u8"))
np.save(d + "/complex.npy", np.array([1 + 2j], dtype=np.complex64))
np.save(d + "/object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
print(json.dumps(res))
)PY");
  return json::parse(out);
}

void expect_matches(const at::Tensor& t, const json& want, const std::string& label) {
  SCOPED_TRACE(label);
  std::vector<int64_t> shape = want["shape"].get<std::vector<int64_t>>();
  ASSERT_EQ(t.sizes().vec(), shape);
  ASSERT_TRUE(t.is_contiguous());
  const auto& vals = want["values"];
  ASSERT_EQ(static_cast<size_t>(t.numel()), vals.size());
  std::string kind = want["kind"];
  at::Tensor flat = t.reshape({-1});
  for (size_t i = 0; i < vals.size(); ++i) {
    if (kind == "b") {
      EXPECT_EQ(flat[i].item<bool>(), vals[i].get<bool>()) << i;
    } else if (kind == "i" || kind == "u") {
      EXPECT_EQ(flat[i].item<int64_t>(), vals[i].get<int64_t>()) << i;
    } else {
      EXPECT_EQ(flat[i].item<double>(), vals[i].get<double>()) << i;
    }
  }
}

class Npy : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::python_has("numpy")) return;
    dir_ = new test::TempDir();
    fixtures_ = new json(write_fixtures(dir_->path()));
  }
  static void TearDownTestSuite() {
    delete fixtures_;
    delete dir_;
    fixtures_ = nullptr;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!fixtures_) GTEST_SKIP() << "/usr/bin/python3 has no numpy";
  }
  static std::string path(const std::string& name) { return *dir_ / name; }
  static const json& want(const std::string& name) { return (*fixtures_)[name]; }
  static test::TempDir* dir_;
  static json* fixtures_;
};
test::TempDir* Npy::dir_ = nullptr;
json* Npy::fixtures_ = nullptr;

}  // namespace

TEST_F(Npy, EveryDtypeInBothByteOrders) {
  int checked = 0;
  for (auto& [name, w] : fixtures_->items()) {
    if (name.size() < 7 ||
        (name.find("_le.npy") == std::string::npos && name.find("_be.npy") == std::string::npos) ||
        name.rfind("fortran", 0) == 0)
      continue;
    at::Tensor t = read_npy(path(name));
    std::string code = name.substr(0, 2);
    at::ScalarType expected = code == "b1"   ? at::kBool
                              : code == "i1" ? at::kChar
                              : code == "i2" ? at::kShort
                              : code == "i4" ? at::kInt
                              : code == "i8" ? at::kLong
                              : code == "u1" ? at::kByte
                              : code == "u2" ? at::kInt
                              : code == "u4" ? at::kLong
                              : code == "u8" ? at::kLong
                              : code == "f2" ? at::kHalf
                              : code == "f4" ? at::kFloat
                                             : at::kDouble;
    EXPECT_EQ(t.scalar_type(), expected) << name;
    expect_matches(t, w, name);
    ++checked;
  }
  EXPECT_EQ(checked, 21);  // 12 codes, 9 of them also big-endian
}

TEST_F(Npy, FortranOrderIsTransposedBack) {
  expect_matches(read_npy(path("fortran.npy")), want("fortran.npy"), "fortran");
  expect_matches(read_npy(path("fortran_be.npy")), want("fortran_be.npy"), "fortran_be");
  // Independent of Python: element [1][2][3] of arange(24)*0.5-3 reshaped (2,3,4).
  EXPECT_EQ(read_npy(path("fortran.npy"))[1][2][3].item<float>(), 23 * 0.5f - 3);
}

TEST_F(Npy, ZeroDimEmptyAndFormatVersions2And3) {
  at::Tensor s = read_npy(path("scalar.npy"));
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item<double>(), 3.25);
  expect_matches(read_npy(path("empty.npy")), want("empty.npy"), "empty");
  expect_matches(read_npy(path("v2.npy")), want("v2.npy"), "v2");
  expect_matches(read_npy(path("v3.npy")), want("v3.npy"), "v3");
}

TEST_F(Npy, NpzStoredAndDeflated) {
  auto plain = read_npz(path("plain.npz"));
  ASSERT_EQ(plain.size(), 2u);
  expect_matches(plain.at("W_enc"), want("W_enc"), "plain W_enc");
  expect_matches(plain.at("b_dec"), want("b_dec"), "plain b_dec");
  auto comp = read_npz(path("compressed.npz"));
  for (auto& ct : (*fixtures_)["compress_types"]) EXPECT_EQ(ct.get<int>(), 8);  // ZIP_DEFLATED
  ASSERT_EQ(comp.size(), 2u);
  expect_matches(comp.at("W_enc"), want("W_enc"), "compressed W_enc");
  expect_matches(comp.at("threshold"), want("threshold"), "compressed threshold");
}

TEST_F(Npy, BadFilesGiveErrorsNamingTheFile) {
  auto expect_error = [](const std::string& p, const std::string& fragment, auto f) {
    try {
      f(p);
      ADD_FAILURE() << "no error for " << p;
    } catch (const Error& e) {
      std::string m = e.what();
      EXPECT_NE(m.find(p), std::string::npos) << m;
      EXPECT_NE(m.find(fragment), std::string::npos) << fragment << " not in: " << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    }
  };
  auto npy = [](const std::string& p) { read_npy(p); };
  auto npz = [](const std::string& p) { read_npz(p); };
  expect_error(path("u8_huge.npy"), "does not fit", npy);
  expect_error(path("complex.npy"), "'<c8' is not supported", npy);
  expect_error(path("object.npy"), "'|O' is not supported", npy);
  std::string good;
  {
    std::ifstream in(path("f4_le.npy"), std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto write = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(path(name), std::ios::binary) << bytes;
    return path(name);
  };
  expect_error(write("trunc.npy", good.substr(0, good.size() - 1)), "needs 24", npy);
  expect_error(write("long.npy", good + "x"), "needs 24", npy);
  expect_error(write("magic.npy", "NOTNUMPY" + good.substr(8)), "magic", npy);
  expect_error(write("hdr.npy", good.substr(0, 20)), "beyond the end", npy);
  std::string badver = good;
  badver[6] = 9;
  expect_error(write("ver.npy", badver), "version 9", npy);
  std::string badhdr = good;
  badhdr.replace(badhdr.find("'shape'"), 7, "'shapx'");
  expect_error(write("badhdr.npy", badhdr), "'shape'", npy);
  expect_error(write("notzip.npz", good), "not a zip", npz);
  expect_error(path("missing.npz"), "no such", npz);
  expect_error(path("missing.npy"), "cannot open", npy);
}

TEST_F(Npy, MutatedFilesParseOrThrowSaelabErrorOnly) {
  std::string good;
  {
    std::ifstream in(path("fortran.npy"), std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::mt19937 rng(7);
  int refused = 0;
  for (int iter = 0; iter < 5000; ++iter) {
    std::string m = good;
    size_t pos = rng() % 130;  // mostly the magic, version, length and header dict
    switch (rng() % 3) {
      case 0:
        m[pos] = static_cast<char>(m[pos] ^ (1 << (rng() % 8)));
        break;
      case 1:
        m.resize(pos);
        break;
      case 2:
        m.insert(pos, std::string(1 + rng() % 3, "(),:'0L9 "[rng() % 9]));
        break;
    }
    try {
      parse_npy(m, "mutant");
    } catch (const Error& e) {
      ++refused;
      EXPECT_EQ(std::string(e.what()).rfind("mutant", 0), 0u) << e.what();
    }
  }
  EXPECT_GT(refused, 500);
}
