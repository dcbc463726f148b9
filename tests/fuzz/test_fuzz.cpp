// The libFuzzer targets of fuzz/ (compiled into this test by CMake), run the cheap deterministic
// way: every seed of fuzz/corpus/<target>/ and a fixed number of seeded mutations of them, with
// the tokens of fuzz/<target>.dict. Every input must parse or be refused with a one-line
// saelab::Error; any other exception, or an allocation beyond the cap below, fails the test and
// leaves the input under the test's temporary folder for `fuzz_<target> FILE` to replay.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "../../fuzz/fuzz_target.h"
#include "test_paths.h"

namespace fs = std::filesystem;
using saelab::fuzz::registry;

namespace {

// Mutants per target: ten thousand take about a second for the fast parsers; the tokenizer.json
// loader (regexes compiled per input) and the run-config loader (TOML, then a round trip) are
// several times slower per input and get fewer.
int mutations_for(const std::string& target) {
  return target == "tokenizer_json" || target == "run_config" ? 3000 : 10000;
}

// Memory cap while a target runs: the address space may grow by at most this much. Inputs here are
// at most a few KiB, so a parser that asks for more trusted a size field it should have checked.
constexpr rlim_t kAddressSpaceHeadroom = rlim_t(1) << 30;

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// libFuzzer's dictionary syntax: one "token" per line, with \\, \" and \xNN escapes.
std::vector<std::string> read_dict(const fs::path& p) {
  std::vector<std::string> out;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) {
    size_t a = line.find('"'), b = line.rfind('"');
    if (line.empty() || line[0] == '#' || a == std::string::npos || b <= a) continue;
    std::string tok;
    for (size_t i = a + 1; i < b; ++i) {
      if (line[i] == '\\' && i + 1 < b) {
        char c = line[++i];
        if (c == 'x' && i + 2 < b) {
          tok += static_cast<char>(std::stoi(line.substr(i + 1, 2), nullptr, 16));
          i += 2;
        } else {
          tok += c;
        }
      } else {
        tok += line[i];
      }
    }
    out.push_back(tok);
  }
  return out;
}

// Byte-level mutations in the spirit of libFuzzer's: flips, interesting integers written over
// length and offset fields, dictionary tokens, erasures, duplications, truncation, splicing.
class Mutator {
 public:
  Mutator(uint64_t seed, std::vector<std::string> dict, const std::vector<std::string>* seeds)
      : rng_(seed), dict_(std::move(dict)), seeds_(seeds) {}

  std::string mutate(std::string m) {
    int edits = 1 + static_cast<int>(rng_() % 4);
    for (int k = 0; k < edits; ++k) edit(m);
    return m;
  }

 private:
  size_t pos(const std::string& m) { return m.empty() ? 0 : rng_() % m.size(); }
  void edit(std::string& m) {
    static const uint64_t interesting[] = {
        0,          1,          0x7f,       0x80,       0xff,  0x7fff, 0xffff, 0x7fffffff,
        0xffffffff, 1ull << 32, 1ull << 40, ~0ull >> 1, ~0ull, 16,     64,     4096};
    size_t p = pos(m);
    switch (rng_() % 9) {
      case 0:
        if (!m.empty()) m[p] = static_cast<char>(m[p] ^ (1 << (rng_() % 8)));
        break;
      case 1:
        if (!m.empty()) m[p] = static_cast<char>(rng_());
        break;
      case 2: {
        uint64_t v = interesting[rng_() % (sizeof(interesting) / sizeof(*interesting))];
        size_t width = size_t(1) << (rng_() % 4);
        for (size_t i = 0; i < width && p + i < m.size(); ++i)
          m[p + i] = static_cast<char>((v >> (8 * i)) & 0xff);
        break;
      }
      case 3:
        if (!dict_.empty()) m.insert(p, dict_[rng_() % dict_.size()]);
        break;
      case 4:
        if (!dict_.empty()) {
          const std::string& t = dict_[rng_() % dict_.size()];
          m.replace(p, std::min(t.size(), m.size() - p), t);
        }
        break;
      case 5:
        if (!m.empty()) m.erase(p, 1 + rng_() % 16);
        break;
      case 6:
        if (!m.empty()) m.insert(p, m.substr(pos(m), 1 + rng_() % 32));
        break;
      case 7:
        m.resize(p);
        break;
      case 8: {  // splice: the head of this input with the tail of another seed
        const std::string& other = (*seeds_)[rng_() % seeds_->size()];
        if (!other.empty()) m = m.substr(0, p) + other.substr(rng_() % other.size());
        break;
      }
    }
  }
  std::mt19937_64 rng_;
  std::vector<std::string> dict_;
  const std::vector<std::string>* seeds_;
};

// Lowers the soft address-space limit for the lifetime of the object.
class AddressSpaceCap {
 public:
  explicit AddressSpaceCap(rlim_t headroom) {
    getrlimit(RLIMIT_AS, &saved_);
    std::ifstream status("/proc/self/status");
    std::string key;
    rlim_t kb = 0;
    while (status >> key) {
      if (key == "VmSize:") {
        status >> kb;
        break;
      }
    }
    rlimit lim = saved_;
    lim.rlim_cur = kb * 1024 + headroom;
    if (saved_.rlim_max != RLIM_INFINITY && lim.rlim_cur > saved_.rlim_max)
      lim.rlim_cur = saved_.rlim_max;
    active_ = kb > 0 && setrlimit(RLIMIT_AS, &lim) == 0;
  }
  ~AddressSpaceCap() {
    if (active_) setrlimit(RLIMIT_AS, &saved_);
  }
  bool active() const { return active_; }

 private:
  rlimit saved_{};
  bool active_ = false;
};

struct Outcome {
  std::string fault;  // empty: the contract held
  bool parsed = false;
  std::string refusal;  // the message of a rejection
};

Outcome run_input(const saelab::fuzz::Body& body, const std::string& input) {
  Outcome o;
  const int caught_before = saelab::fuzz::caught_refusals();
  try {
    body(reinterpret_cast<const uint8_t*>(input.data()), input.size());
    // A body that catches its own refusals (several parses of one input) counts as refusing.
    o.parsed = saelab::fuzz::caught_refusals() == caught_before;
  } catch (const saelab::Error& e) {
    o.refusal = e.what();
    std::string f = saelab::fuzz::message_fault(e.what());
    if (!f.empty()) o.fault = f + ": " + e.what();
  } catch (const std::bad_alloc&) {
    o.fault = "allocation beyond the memory cap (std::bad_alloc)";
  } catch (const std::exception& e) {
    o.fault = std::string("exception that is not saelab::Error: ") + e.what();
  } catch (...) {
    o.fault = "exception of unknown type";
  }
  return o;
}

std::vector<std::string> target_names() {
  std::vector<std::string> names;
  for (const auto& [name, body] : registry()) names.push_back(name);
  return names;
}

class FuzzPass : public ::testing::TestWithParam<std::string> {};

TEST_P(FuzzPass, CorpusAndSeededMutationsKeepTheErrorContract) {
  const std::string name = GetParam();
  const auto& body = registry().at(name);
  const fs::path corpus = fs::path(SAELAB_SOURCE_DIR) / "fuzz" / "corpus" / name;
  ASSERT_TRUE(fs::is_directory(corpus)) << corpus << ": every target needs a seed corpus";
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(corpus)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::vector<std::string> seeds;
  for (const auto& f : files) seeds.push_back(read_bytes(f));
  ASSERT_FALSE(seeds.empty());

  const fs::path failures =
      fs::path(std::getenv("SAELAB_TEST_TMP") ? std::getenv("SAELAB_TEST_TMP") : "/tmp") /
      ("fuzz-failures-" + name);
  int faults = 0;
  auto record = [&](const std::string& input, const std::string& what, const std::string& fault) {
    if (++faults > 5) return;  // the first few are enough to act on
    fs::create_directories(failures);
    fs::path p = failures / ("input-" + std::to_string(faults));
    std::ofstream(p, std::ios::binary) << input;
    ADD_FAILURE() << name << ": " << what << ": " << fault << " (input saved as " << p << ")";
  };

  AddressSpaceCap cap(kAddressSpaceHeadroom);
  EXPECT_TRUE(cap.active()) << "could not set RLIMIT_AS: the memory bound is not checked";
  auto t0 = std::chrono::steady_clock::now();
  // Seeds are real files: they must load (a target that refuses everything tests nothing), except
  // the regression inputs named regress-*, which only have to keep the contract.
  for (size_t i = 0; i < files.size(); ++i) {
    Outcome o = run_input(body, seeds[i]);
    const bool regression = files[i].filename().string().rfind("regress-", 0) == 0;
    if (!o.fault.empty())
      record(seeds[i], files[i].filename().string(), o.fault);
    else if (!o.refusal.empty() && !regression)
      ADD_FAILURE() << name << ": seed " << files[i] << " was refused: " << o.refusal;
  }
  const fs::path dict = fs::path(SAELAB_SOURCE_DIR) / "fuzz" / (name + ".dict");
  Mutator mut(0x5ae1ab + std::hash<std::string>{}(name),
              fs::exists(dict) ? read_dict(dict) : std::vector<std::string>{}, &seeds);
  const int n = mutations_for(name);
  int parsed = 0, refused = 0;
  for (int i = 0; i < n; ++i) {
    std::string m = mut.mutate(seeds[static_cast<size_t>(i) % seeds.size()]);
    Outcome o = run_input(body, m);
    if (!o.fault.empty()) record(m, "mutant " + std::to_string(i), o.fault);
    (o.parsed ? parsed : refused)++;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s: %zu seeds, %d mutants (%d parsed, %d refused) in %.1fs\n", name.c_str(),
              seeds.size(), n, parsed, refused, secs);
  EXPECT_EQ(faults, 0);
  EXPECT_GT(refused, n / 10) << "the mutations hardly ever break a file: the pass tests little";
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzPass, ::testing::ValuesIn(target_names()),
                         [](const auto& info) { return info.param; });

// Every seed corpus belongs to a compiled target and every target has one, so a target cannot be
// dropped from this test (or added without seeds) unnoticed.
TEST(FuzzTargets, EachCorpusFolderHasItsTarget) {
  std::set<std::string> corpora;
  for (const auto& e : fs::directory_iterator(fs::path(SAELAB_SOURCE_DIR) / "fuzz" / "corpus"))
    corpora.insert(e.path().filename().string());
  std::set<std::string> targets;
  for (const auto& n : target_names()) targets.insert(n);
  EXPECT_EQ(corpora, targets);
  EXPECT_GE(targets.size(), 9u);
}

}  // namespace
