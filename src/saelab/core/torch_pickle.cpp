// A restricted unpickler for torch.save zip checkpoints. It builds plain values (no Python
// objects): dicts, lists, tuples, scalars, strings, and tensors rebuilt from the raw storages.
// Globals are checked against an allow-list when the GLOBAL opcode is read, so nothing outside
// the list can ever be called.
#include "saelab/core/torch_pickle.h"

#include <fmt/ranges.h>  // fmt::join (in format.h before fmt 11)
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <unordered_map>

#include "saelab/core/error.h"
#include "saelab/core/zip.h"

namespace saelab {
namespace {

// The most elements a tensor may have beyond its storage's size (a zero-stride view that loading
// would materialise): 2^26, 256 MiB of float32.
constexpr int64_t kMaxBroadcastElements = int64_t(1) << 26;

struct Obj;
using Val = std::shared_ptr<Obj>;

struct Obj {
  enum Kind { None, Bool, Int, Float, Str, Tuple, List, Dict, Global, Storage, Tensor } kind = None;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                                  // Str, Bytes; Global: "module.name"; Storage: key
  std::vector<Val> items;                         // Tuple, List
  std::vector<std::pair<Val, Val>> entries;       // Dict (insertion order)
  std::unordered_map<std::string, size_t> index;  // Dict: string key -> position in entries
  at::ScalarType dtype = at::kFloat;              // Global storage types, Storage
  at::Tensor tensor;                              // Storage (1-D, whole storage), Tensor

  Obj() = default;
  Obj(const Obj&) = delete;
  // Iterative teardown: a hostile pickle can nest containers a million deep, and the default
  // recursive destruction would overflow the stack.
  ~Obj() {
    std::vector<Val> pending;
    auto drain = [&pending](Obj& o) {
      for (auto& x : o.items) pending.push_back(std::move(x));
      for (auto& [k, v] : o.entries) {
        pending.push_back(std::move(k));
        pending.push_back(std::move(v));
      }
      o.items.clear();
      o.entries.clear();
    };
    drain(*this);
    while (!pending.empty()) {
      Val v = std::move(pending.back());
      pending.pop_back();
      if (v && v.use_count() == 1) drain(*v);
    }
  }

  static Val make(Kind k) {
    auto v = std::make_shared<Obj>();
    v->kind = k;
    return v;
  }
};

const char* kind_name(Obj::Kind k) {
  static const char* names[] = {"None", "bool", "int",    "float",   "str",   "tuple",
                                "list", "dict", "global", "storage", "tensor"};
  return names[k];
}

bool storage_dtype(const std::string& name, at::ScalarType* out) {
  static const std::map<std::string, at::ScalarType> types = {
      {"FloatStorage", at::kFloat}, {"DoubleStorage", at::kDouble},
      {"HalfStorage", at::kHalf},   {"BFloat16Storage", at::kBFloat16},
      {"LongStorage", at::kLong},   {"IntStorage", at::kInt},
      {"ShortStorage", at::kShort}, {"CharStorage", at::kChar},
      {"ByteStorage", at::kByte},   {"BoolStorage", at::kBool},
  };
  auto it = types.find(name);
  if (it == types.end()) return false;
  *out = it->second;
  return true;
}

class Unpickler {
 public:
  Unpickler(const std::string& data, const ZipReader& zip, const std::string& prefix,
            bool big_endian)
      : d_(data), zip_(zip), prefix_(prefix), swap_(big_endian), what_(zip.path()) {}

  Val run() {
    while (true) {
      if (pos_ >= d_.size()) bad("data.pkl ends without STOP");
      const uint8_t op = byte();
      switch (op) {
        case 0x80:
          byte();
          break;  // PROTO
        case 0x95:
          take(8);
          break;     // FRAME: framing is irrelevant when all bytes are here
        case '.': {  // STOP
          Val v = pop();
          return v;
        }
        case '(':
          marks_.push_back(stack_.size());
          break;  // MARK
        case 'N':
          push(Obj::make(Obj::None));
          break;
        case 0x88:
        case 0x89: {  // NEWTRUE / NEWFALSE
          Val v = Obj::make(Obj::Bool);
          v->b = op == 0x88;
          push(v);
          break;
        }
        case 'J':
          push_int(static_cast<int32_t>(le(4)));
          break;  // BININT
        case 'K':
          push_int(static_cast<int64_t>(le(1)));
          break;  // BININT1
        case 'M':
          push_int(static_cast<int64_t>(le(2)));
          break;  // BININT2
        case 0x8a:
          long_int(le(1));
          break;  // LONG1
        case 0x8b:
          long_int(le(4));
          break;     // LONG4
        case 'G': {  // BINFLOAT (big-endian)
          const std::string b = take(8);
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = (bits << 8) | static_cast<uint8_t>(b[k]);
          Val v = Obj::make(Obj::Float);
          std::memcpy(&v->f, &bits, 8);
          push(v);
          break;
        }
        case 'X':
          push_str(take(le(4)));
          break;  // BINUNICODE
        case 0x8c:
          push_str(take(le(1)));
          break;  // SHORT_BINUNICODE
        case 0x8d:
          push_str(take(le(8)));
          break;  // BINUNICODE8
        case 'T':
          push_str(take(le(4)));
          break;  // BINSTRING
        case 'U':
          push_str(take(le(1)));
          break;  // SHORT_BINSTRING
        case 'B':
          push_str(take(le(4)));
          break;  // BINBYTES
        case 'C':
          push_str(take(le(1)));
          break;  // SHORT_BINBYTES
        case ')':
          push(Obj::make(Obj::Tuple));
          break;  // EMPTY_TUPLE
        case ']':
          push(Obj::make(Obj::List));
          break;  // EMPTY_LIST
        case '}':
          push(Obj::make(Obj::Dict));
          break;     // EMPTY_DICT
        case 't': {  // TUPLE
          Val v = Obj::make(Obj::Tuple);
          v->items = pop_mark();
          push(v);
          break;
        }
        case 'l': {  // LIST
          Val v = Obj::make(Obj::List);
          v->items = pop_mark();
          push(v);
          break;
        }
        case 'd': {  // DICT
          Val v = Obj::make(Obj::Dict);
          set_items(v, pop_mark());
          push(v);
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          size_t n = op - 0x84;
          if (stack_.size() < n + base()) bad("stack underflow in TUPLE{}", n);
          Val v = Obj::make(Obj::Tuple);
          v->items.assign(stack_.end() - n, stack_.end());
          stack_.resize(stack_.size() - n);
          push(v);
          break;
        }
        case 'a': {  // APPEND
          Val x = pop();
          expect(top(), Obj::List, "APPEND")->items.push_back(x);
          break;
        }
        case 'e': {  // APPENDS
          auto xs = pop_mark();
          auto& l = expect(top(), Obj::List, "APPENDS")->items;
          l.insert(l.end(), xs.begin(), xs.end());
          break;
        }
        case 's': {  // SETITEM
          Val v = pop();
          Val k = pop();
          set_items(expect(top(), Obj::Dict, "SETITEM"), {k, v});
          break;
        }
        case 'u': {  // SETITEMS
          auto xs = pop_mark();
          set_items(expect(top(), Obj::Dict, "SETITEMS"), xs);
          break;
        }
        case 'q':
          memo_put(le(1));
          break;  // BINPUT
        case 'r':
          memo_put(le(4));
          break;  // LONG_BINPUT
        case 0x94:
          memo_put(memo_.size());
          break;  // MEMOIZE
        case 'h':
          push(memo_get(le(1)));
          break;  // BINGET
        case 'j':
          push(memo_get(le(4)));
          break;  // LONG_BINGET
        case '0':
          pop();
          break;  // POP
        case '1':
          pop_mark();
          break;  // POP_MARK
        case '2':
          push(top());
          break;     // DUP
        case 'c': {  // GLOBAL
          std::string module = line();
          std::string name = line();
          push(global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Val name = pop();
          Val module = pop();
          if (module->kind != Obj::Str || name->kind != Obj::Str)
            bad("STACK_GLOBAL needs two strings");
          push(global(module->s, name->s));
          break;
        }
        case 'R': {  // REDUCE
          Val args = pop();
          Val fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 'b': {  // BUILD: state of OrderedDict/_metadata etc.
          pop();
          if (stack_.size() <= base()) bad("stack underflow in BUILD");
          break;
        }
        case 'Q':
          push(persistent_load(pop()));
          break;  // BINPERSID
        default:
          bad("unsupported pickle opcode 0x{:02x} at byte {}", op, pos_ - 1);
      }
    }
  }

 private:
  template <typename... Args>
  [[noreturn]] void bad(fmt::format_string<Args...> f, Args&&... args) {
    fail("{}: torch.save pickle: {}", what_, fmt::format(f, std::forward<Args>(args)...));
  }

  uint8_t byte() {
    if (pos_ >= d_.size()) bad("data.pkl truncated");
    return static_cast<uint8_t>(d_[pos_++]);
  }
  std::string take(uint64_t n) {
    if (n > d_.size() - pos_) bad("data.pkl truncated (needs {} bytes at byte {})", n, pos_);
    std::string s = d_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  uint64_t le(int n) {
    const std::string b = take(n);
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = (v << 8) | static_cast<uint8_t>(b[k]);
    return v;
  }
  std::string line() {
    size_t nl = d_.find('\n', pos_);
    if (nl == std::string::npos || nl - pos_ > 256) bad("GLOBAL without a newline-terminated name");
    std::string s = d_.substr(pos_, nl - pos_);
    pos_ = nl + 1;
    return s;
  }

  size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(Val v) {
    if (stack_.size() > (1u << 20)) bad("stack too deep");
    stack_.push_back(std::move(v));
  }
  Val pop() {
    if (stack_.size() <= base()) bad("stack underflow at byte {}", pos_);
    Val v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Val top() {
    if (stack_.size() <= base()) bad("stack underflow at byte {}", pos_);
    return stack_.back();
  }
  std::vector<Val> pop_mark() {
    if (marks_.empty()) bad("no MARK on the stack at byte {}", pos_);
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Val> out(stack_.begin() + m, stack_.end());
    stack_.resize(m);
    return out;
  }
  Val expect(const Val& v, Obj::Kind k, const char* op) {
    if (v->kind != k) bad("{} needs a {}, got a {}", op, kind_name(k), kind_name(v->kind));
    return v;
  }
  void push_int(int64_t i) {
    Val v = Obj::make(Obj::Int);
    v->i = i;
    push(v);
  }
  void long_int(uint64_t n) {
    if (n > 8) bad("integer of {} bytes does not fit int64", n);
    const std::string b = take(n);
    uint64_t u = 0;
    for (int k = static_cast<int>(n) - 1; k >= 0; --k) u = (u << 8) | static_cast<uint8_t>(b[k]);
    if (n > 0 && n < 8 && (static_cast<uint8_t>(b[n - 1]) & 0x80)) u |= ~0ull << (8 * n);  // sign
    push_int(static_cast<int64_t>(u));
  }
  void push_str(std::string s) {
    Val v = Obj::make(Obj::Str);
    v->s = std::move(s);
    push(v);
  }
  void set_items(const Val& dict, const std::vector<Val>& kv) {
    if (kv.size() % 2) bad("odd number of items for a dict");
    for (size_t k = 0; k < kv.size(); k += 2) {
      if (kv[k]->kind == Obj::Str) {
        auto [it, fresh] = dict->index.emplace(kv[k]->s, dict->entries.size());
        if (!fresh) {
          dict->entries[it->second].second = kv[k + 1];
          continue;
        }
      }
      dict->entries.emplace_back(kv[k], kv[k + 1]);
    }
  }
  void memo_put(uint64_t idx) {
    if (memo_.size() > (1u << 24)) bad("memo too large");
    memo_[idx] = top();
  }
  Val memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) bad("memo key {} not defined", idx);
    return it->second;
  }

  Val global(const std::string& module, const std::string& name) {
    const std::string full = module + "." + name;
    Val v = Obj::make(Obj::Global);
    v->s = full;
    if (full == "collections.OrderedDict" || full == "torch._utils._rebuild_tensor_v2" ||
        full == "torch._utils._rebuild_parameter" ||
        full == "torch._utils._rebuild_parameter_with_state")
      return v;
    if (module == "torch" && storage_dtype(name, &v->dtype)) return v;
    fail("{}: torch.save pickle refuses global '{}' (only state-dict globals are allowed)", what_,
         full);
  }

  Val reduce(const Val& fn, const Val& args) {
    if (fn->kind != Obj::Global) bad("REDUCE of a {}, not a global", kind_name(fn->kind));
    if (args->kind != Obj::Tuple) bad("REDUCE arguments must be a tuple");
    const auto& a = args->items;
    if (fn->s == "collections.OrderedDict") {
      Val d = Obj::make(Obj::Dict);
      if (!a.empty()) bad("OrderedDict with arguments is not supported");
      return d;
    }
    if (fn->s == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(a);
    if (fn->s == "torch._utils._rebuild_parameter" ||
        fn->s == "torch._utils._rebuild_parameter_with_state") {
      if (a.empty() || a[0]->kind != Obj::Tensor) bad("{} needs a tensor", fn->s);
      return a[0];
    }
    bad("'{}' cannot be called", fn->s);
  }

  std::vector<int64_t> int_tuple(const Val& v, const char* what) {
    if (v->kind != Obj::Tuple) bad("tensor {} must be a tuple", what);
    std::vector<int64_t> out;
    for (const auto& x : v->items) {
      if (x->kind != Obj::Int || x->i < 0) bad("tensor {} must hold non-negative ints", what);
      out.push_back(x->i);
    }
    return out;
  }

  Val rebuild_tensor(const std::vector<Val>& a) {
    if (a.size() < 4 || a[0]->kind != Obj::Storage || a[1]->kind != Obj::Int)
      bad("_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)");
    const at::Tensor& storage = a[0]->tensor;
    const int64_t offset = a[1]->i;
    auto size = int_tuple(a[2], "size");
    auto stride = int_tuple(a[3], "stride");
    if (size.size() != stride.size()) bad("tensor size and stride differ in length");
    const int64_t n = storage.numel();
    if (offset < 0 || offset > n) bad("tensor offset {} outside storage of {} elements", offset, n);
    const bool empty = std::find(size.begin(), size.end(), 0) != size.end();
    // Loading makes every tensor contiguous, so its element count is what gets allocated. A view
    // with zero strides may repeat its storage (torch.save of an expanded tensor), but a few bytes
    // of storage must not become gigabytes: beyond the storage's own size, at most
    // kMaxBroadcastElements.
    int64_t numel = 1;
    for (int64_t s : size) {
      if (s != 0 && numel > (int64_t(1) << 62) / s)
        bad("tensor of size {} has more than 2^62 elements", fmt::join(size, "x"));
      numel *= s;
    }
    if (numel > n && numel > kMaxBroadcastElements)
      bad("tensor of size {} ({} elements) repeats storage '{}' of {} elements beyond the {} "
          "elements a broadcast view may hold",
          fmt::join(size, "x"), numel, a[0]->s, n, kMaxBroadcastElements);
    int64_t last = offset;  // index of the last element the view touches
    for (size_t k = 0; k < size.size() && !empty; ++k) {
      if (stride[k] > 0 && (size[k] - 1) > (n - last) / stride[k])
        bad("tensor of size {} stride {} offset {} overruns storage '{}' of {} elements",
            fmt::join(size, "x"), fmt::join(stride, ","), offset, a[0]->s, n);
      else
        last += (size[k] - 1) * stride[k];
    }
    Val v = Obj::make(Obj::Tensor);
    if (empty) {
      v->tensor = at::empty(size, storage.options());
    } else {
      if (last >= n)
        bad("tensor at offset {} overruns storage '{}' of {} elements", offset, a[0]->s, n);
      v->tensor = storage.as_strided(size, stride, offset);
    }
    return v;
  }

  Val persistent_load(const Val& pid) {
    if (pid->kind != Obj::Tuple || pid->items.size() < 5 || pid->items[0]->kind != Obj::Str ||
        pid->items[0]->s != "storage" || pid->items[1]->kind != Obj::Global ||
        pid->items[2]->kind != Obj::Str)
      bad("persistent id is not ('storage', type, key, location, numel)");
    const Val& type = pid->items[1];
    at::ScalarType dt;
    if (type->s.rfind("torch.", 0) != 0 || !storage_dtype(type->s.substr(6), &dt))
      bad("persistent id names '{}', not a storage type", type->s);
    const std::string key = pid->items[2]->s;
    auto it = storages_.find(key);
    if (it == storages_.end()) {
      const std::string entry = prefix_ + "data/" + key;
      if (!zip_.contains(entry)) bad("storage '{}' missing from the archive", entry);
      const uint64_t bytes = zip_.size(entry);
      const size_t item = c10::elementSize(dt);
      if (bytes % item) bad("storage '{}' has {} bytes, not a multiple of {}", entry, bytes, item);
      if (pid->items[4]->kind == Obj::Int &&
          static_cast<uint64_t>(pid->items[4]->i) * item != bytes)
        bad("storage '{}' has {} bytes but the pickle says {} elements of {}", entry, bytes,
            pid->items[4]->i, c10::toString(dt));
      at::Tensor t = at::empty({static_cast<int64_t>(bytes / item)}, at::TensorOptions().dtype(dt));
      if (bytes) zip_.read_into(entry, t.data_ptr(), bytes);
      if (swap_ && item > 1) {
        uint8_t* p = static_cast<uint8_t*>(t.data_ptr());
        for (uint64_t e = 0; e < bytes; e += item) std::reverse(p + e, p + e + item);
      }
      if (dt == at::kBool) {
        uint8_t* p = static_cast<uint8_t*>(t.data_ptr());
        for (uint64_t e = 0; e < bytes; ++e) p[e] = p[e] != 0;
      }
      it = storages_.emplace(key, t).first;
    } else if (it->second.scalar_type() != dt) {
      bad("storage '{}' used as both {} and {}", key, c10::toString(it->second.scalar_type()),
          c10::toString(dt));
    }
    Val v = Obj::make(Obj::Storage);
    v->s = key;
    v->dtype = dt;
    v->tensor = it->second;
    return v;
  }

  const std::string& d_;
  const ZipReader& zip_;
  std::string prefix_;
  bool swap_;
  std::string what_;
  size_t pos_ = 0;
  std::vector<Val> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Val> memo_;
  std::map<std::string, at::Tensor> storages_;
};

void flatten(const Val& dict, const std::string& prefix, std::map<std::string, at::Tensor>& out,
             const std::string& path, int depth) {
  if (depth > 32) fail("{}: torch.save dicts nest deeper than 32", path);
  for (const auto& [k, v] : dict->entries) {
    if (k->kind != Obj::Str) continue;
    const std::string key = prefix + k->s;
    if (v->kind == Obj::Tensor) {
      if (!out.emplace(key, v->tensor.contiguous()).second)
        fail("{}: torch.save state dict holds '{}' twice after flattening", path, key);
    } else if (v->kind == Obj::Dict) {
      flatten(v, key + ".", out, path, depth + 1);
    }
  }
}

}  // namespace

std::map<std::string, at::Tensor> load_torch_state_dict(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("{}: cannot open torch.save file ({})", path, std::strerror(errno));
  unsigned char head[2] = {0, 0};
  size_t got = std::fread(head, 1, 2, f);
  std::fclose(f);
  if (!looks_like_zip(path)) {
    if (got >= 1 && head[0] == 0x80)
      fail(
          "{}: legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with "
          "torch.save from torch >= 1.6",
          path);
    fail("{}: not a torch.save zip archive", path);
  }
  ZipReader zip(path);
  std::string prefix;
  for (const auto& n : zip.names()) {
    size_t slash = n.find('/');
    if (slash != std::string::npos && n.compare(slash, std::string::npos, "/data.pkl") == 0) {
      prefix = n.substr(0, slash + 1);
      break;
    }
  }
  if (prefix.empty()) fail("{}: zip archive has no <name>/data.pkl: not a torch.save file", path);
  bool big_endian = false;
  if (zip.contains(prefix + "byteorder")) {
    std::string order = zip.read(prefix + "byteorder");
    if (order == "big")
      big_endian = true;
    else if (order != "little")
      fail("{}: unknown byteorder '{}'", path, order.substr(0, 20));
  }
  const std::string pkl = zip.read(prefix + "data.pkl");
  Val root = Unpickler(pkl, zip, prefix, big_endian).run();
  if (root->kind != Obj::Dict)
    fail("{}: torch.save file holds a {}, expected a dict of tensors (a state dict)", path,
         kind_name(root->kind));
  std::map<std::string, at::Tensor> out;
  flatten(root, "", out, path, 0);
  return out;
}

}  // namespace saelab
