// torch.save reader against files written by Debian's python3-torch: state dicts of nn.Linear /
// nn.Embedding models, several dtypes, views sharing one storage, nested dicts, Parameters; values
// compared with .npy copies the same script writes. Malicious pickles must be refused unexecuted.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/core/npy.h"
#include "saelab/core/torch_pickle.h"
#include "test_util.h"

using namespace saelab;

namespace {

const char* kScript = R"PY(
import collections, json, os, pickle, sys, zipfile
import numpy as np, torch
d = sys.argv[1] if len(sys.argv) > 1 else DIR
torch.manual_seed(0)
manifest = {}
def expect(file, key, t):
    name = "%s__%s.npy" % (file, key)
    a = t.detach()
    a = a.float() if a.dtype in (torch.float16, torch.bfloat16) else a
    np.save(os.path.join(d, name), a.numpy())
    manifest.setdefault(file, {})[key] = {"dtype": str(t.dtype), "shape": list(t.shape), "npy": name}

class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(5, 3)
        self.lin = torch.nn.Linear(3, 4)
m = M()
sd = m.state_dict()
torch.save(sd, os.path.join(d, "model.pt"))
for k, v in sd.items(): expect("model.pt", k, v)

dt = collections.OrderedDict()
dt["f32"] = torch.randn(2, 3)
dt["f16"] = torch.randn(4).half()
dt["bf16"] = torch.randn(3, 2).bfloat16()
dt["f64"] = torch.randn(2).double()
dt["i64"] = torch.arange(-3, 3, dtype=torch.int64) * (2 ** 40)
dt["i32"] = torch.arange(5, dtype=torch.int32) - 2
dt["u8"] = torch.tensor([0, 7, 255], dtype=torch.uint8)
dt["bool"] = torch.tensor([True, False, True])
dt["scalar"] = torch.tensor(2.5)
dt["empty"] = torch.zeros(0, 3)
torch.save(dt, os.path.join(d, "dtypes.pt"))
for k, v in dt.items(): expect("dtypes.pt", k, v)

base = torch.randn(3, 4)
views = collections.OrderedDict(w=base, wt=base.t(), row=base[1], cols=base[:, 1:3], step=base.view(-1)[1::5])
torch.save(views, os.path.join(d, "views.pt"))
for k, v in views.items(): expect("views.pt", k, v)
manifest["views_share"] = views["w"].storage().data_ptr() == views["wt"].storage().data_ptr()

nested = {"model": sd, "epoch": 3, "cfg": {"lr": 0.1, "name": "x", "W": torch.ones(2)},
          "param": torch.nn.Parameter(torch.full((2,), 4.0)), "hist": [torch.zeros(1)], 7: torch.ones(1)}
torch.save(nested, os.path.join(d, "nested.pt"))
for k, v in sd.items(): expect("nested.pt", "model." + k, v)
expect("nested.pt", "cfg.W", nested["cfg"]["W"])
expect("nested.pt", "param", nested["param"])

# Zero strides: torch.save keeps an expanded tensor's one-element storage and its view.
small = collections.OrderedDict(b=torch.arange(3.).expand(4, 3))
torch.save(small, os.path.join(d, "broadcast_small.pt"))
expect("broadcast_small.pt", "b", small["b"])
torch.save({"huge": torch.zeros(1).expand(1 << 14, 1 << 14)}, os.path.join(d, "broadcast_huge.pt"))

torch.save(sd, os.path.join(d, "legacy.pt"), _use_new_zipfile_serialization=False)
torch.save(torch.ones(3), os.path.join(d, "bare.pt"))

marker = os.path.join(d, "PWNED")
class EvilSystem:
    def __reduce__(self): return (os.system, ("touch " + marker,))
class EvilEval:
    def __reduce__(self): return (eval, ("open(%r, 'w').write('x')" % marker,))
# protocol 2 writes GLOBAL 'posix system'; protocol 4 writes STACK_GLOBAL 'builtins' 'eval'.
for name, obj, proto in [("evil_system.pt", EvilSystem(), 2), ("evil_eval.pt", EvilEval(), 4)]:
    payload = pickle.dumps(collections.OrderedDict(x=obj), protocol=proto)
    with zipfile.ZipFile(os.path.join(d, name), "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
def raw(name, entries):
    with zipfile.ZipFile(os.path.join(d, name), "w", zipfile.ZIP_STORED) as z:
        for k, v in entries.items(): z.writestr("archive/" + k, v)
good = zipfile.ZipFile(os.path.join(d, "model.pt"))
pkl = good.read("model/data.pkl")
raw("deep.pt", {"data.pkl": b"\x80\x02]" + b"\x85" * 200000 + b"."})
raw("badmemo.pt", {"data.pkl": b"\x80\x02h\x05."})
raw("truncpkl.pt", {"data.pkl": b"\x80\x02}q\x00(X\x05\x00\x00\x00ab"})
raw("inst.pt", {"data.pkl": b"\x80\x02(iposix\nsystem\n."})
raw("nostorage.pt", {"data.pkl": pkl})
raw("shortstorage.pt", dict({"data.pkl": pkl, "data/0": good.read("model/data/0")[:4]},
    **{n[len("model/"):]: good.read(n) for n in good.namelist() if "/data/" in n and not n.endswith("/0")}))
print(json.dumps(manifest))
)PY";

at::ScalarType dtype_of(const std::string& s) {
  static const std::map<std::string, at::ScalarType> m = {
      {"torch.float32", at::kFloat},     {"torch.float16", at::kHalf},
      {"torch.bfloat16", at::kBFloat16}, {"torch.float64", at::kDouble},
      {"torch.int64", at::kLong},        {"torch.int32", at::kInt},
      {"torch.uint8", at::kByte},        {"torch.bool", at::kBool}};
  return m.at(s);
}

class TorchPickle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::python_has("torch")) return;
    dir_ = new test::TempDir();
    std::string script = kScript;
    script.replace(script.find("DIR"), 3, "\"" + dir_->path() + "\"");
    manifest_ = new json(json::parse(test::run_python(script)));
  }
  static void TearDownTestSuite() {
    delete manifest_;
    delete dir_;
    manifest_ = nullptr;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!manifest_) GTEST_SKIP() << "/usr/bin/python3 has no torch";
  }
  static std::string path(const std::string& name) { return *dir_ / name; }

  // Every key the manifest lists for `file` loads with its dtype, shape and values.
  static void check_file(const std::string& file, size_t expected_keys) {
    SCOPED_TRACE(file);
    auto got = load_torch_state_dict(path(file));
    const json& want = (*manifest_)[file];
    EXPECT_EQ(got.size(), expected_keys);
    for (auto& [key, w] : want.items()) {
      SCOPED_TRACE(key);
      ASSERT_TRUE(got.count(key));
      const at::Tensor& t = got[key];
      EXPECT_EQ(t.scalar_type(), dtype_of(w["dtype"]));
      EXPECT_EQ(t.sizes().vec(), w["shape"].get<std::vector<int64_t>>());
      EXPECT_TRUE(t.is_contiguous());
      at::Tensor ref = read_npy(path(w["npy"]));
      EXPECT_TRUE(torch::equal(t.to(ref.scalar_type()), ref)) << t << "\nvs\n" << ref;
    }
  }

  static test::TempDir* dir_;
  static json* manifest_;
};
test::TempDir* TorchPickle::dir_ = nullptr;
json* TorchPickle::manifest_ = nullptr;

template <typename F>
void expect_error(const std::string& p, const std::string& fragment, F f) {
  try {
    f();
    ADD_FAILURE() << "no error for " << p;
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(p), std::string::npos) << m;
    EXPECT_NE(m.find(fragment), std::string::npos) << fragment << " not in: " << m;
  }
}

}  // namespace

TEST_F(TorchPickle, LinearAndEmbeddingStateDict) {
  check_file("model.pt", 3);  // embed.weight, lin.weight, lin.bias
}

TEST_F(TorchPickle, EveryDtype) { check_file("dtypes.pt", 10); }

TEST_F(TorchPickle, SmallBroadcastViewsLoad) { check_file("broadcast_small.pt", 1); }

TEST_F(TorchPickle, ViewsWithOffsetsAndStridesSharingOneStorage) {
  ASSERT_TRUE((*manifest_)["views_share"].get<bool>());  // the fixture really shares a storage
  check_file("views.pt", 5);
  auto got = load_torch_state_dict(path("views.pt"));
  // Independent of the .npy copies: the transposed view is the transpose of the base.
  EXPECT_TRUE(torch::equal(got["wt"], got["w"].t()));
  EXPECT_TRUE(torch::equal(got["row"], got["w"][1]));
}

TEST_F(TorchPickle, NestedDictsFlattenToDottedKeysAndParametersUnwrap) {
  // model.{embed.weight, lin.weight, lin.bias}, cfg.W, param; ints, strings, lists, int keys
  // skipped.
  check_file("nested.pt", 5);
}

TEST_F(TorchPickle, MaliciousGlobalsAreRefusedAndNothingRuns) {
  expect_error(path("evil_system.pt"), "refuses global",
               [] { load_torch_state_dict(path("evil_system.pt")); });
  expect_error(path("evil_system.pt"), "system'",
               [] { load_torch_state_dict(path("evil_system.pt")); });
  expect_error(path("evil_eval.pt"), "refuses global 'builtins.eval'",
               [] { load_torch_state_dict(path("evil_eval.pt")); });
  EXPECT_FALSE(std::filesystem::exists(path("PWNED")));
}

TEST_F(TorchPickle, LegacyBareAndBrokenFilesGiveErrors) {
  expect_error(path("legacy.pt"), "legacy", [] { load_torch_state_dict(path("legacy.pt")); });
  expect_error(path("bare.pt"), "expected a dict", [] { load_torch_state_dict(path("bare.pt")); });
  expect_error(path("nope.pt"), "cannot open", [] { load_torch_state_dict(path("nope.pt")); });
  // A valid archive cut short must fail cleanly, never crash.
  std::string good = path("model.pt");
  std::string bytes;
  {
    std::ifstream in(good, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  for (size_t cut : {bytes.size() / 2, bytes.size() - 30, size_t{100}}) {
    std::string p = path("cut" + std::to_string(cut) + ".pt");
    std::ofstream(p, std::ios::binary) << bytes.substr(0, cut);
    EXPECT_THROW(load_torch_state_dict(p), Error) << cut;
  }
}

TEST_F(TorchPickle, HostilePicklesFailCleanly) {
  const std::pair<const char*, const char*> cases[] = {
      {"deep.pt", "expected a dict"},  // 200k nested tuples: no recursion in teardown
      {"badmemo.pt", "memo key 5"},
      {"truncpkl.pt", "truncated"},
      {"inst.pt", "unsupported pickle opcode 0x69"},
      {"nostorage.pt", "missing from the archive"},
      {"shortstorage.pt", "bytes but the pickle says"},
      // 2^28 elements (1 GiB) from a 4-byte storage: refused before anything is allocated.
      {"broadcast_huge.pt", "repeats storage"},
  };
  for (auto [file, fragment] : cases) {
    SCOPED_TRACE(file);
    expect_error(path(file), fragment, [&] { load_torch_state_dict(path(file)); });
  }
}
