// c10d process groups behind core/collectives.h (process_group.h).
#include "saelab/dist/process_group.h"

#include <torch/torch.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if SAELAB_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>
#include <utility>
#include <vector>

#include "saelab/core/error.h"

namespace saelab {
namespace {

int env_int(const char* name, std::optional<int> fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    if (fallback) return *fallback;
    fail("{}: expected in the environment of a distributed run (WORLD_SIZE is set)", name);
  }
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi)
    fail("{} = '{}': expected an integer from {} to {}", name, v, lo, hi);
  return static_cast<int>(x);
}

// A c10d process group as Collectives. c10d works on lists of tensors; every call here passes one.
// A template over the group's class: LibTorch 1.x derives ProcessGroupGloo from ProcessGroup,
// 2.x from Backend, with the same collective methods.
template <typename Group>
class C10dCollectives : public Collectives {
 public:
  // comm: where the group's tensors must be (Gloo: CPU; NCCL: this rank's GPU); tensors
  // elsewhere are copied there and back.
  C10dCollectives(c10::intrusive_ptr<Group> pg, int rank, int size, at::Device comm)
      : pg_(std::move(pg)), rank_(rank), size_(size), comm_(comm) {}
  int rank() const override { return rank_; }
  int world_size() const override { return size_; }

  void sum_(at::Tensor& t) override { reduce(t, c10d::ReduceOp::SUM); }
  void min_(at::Tensor& t) override { reduce(t, c10d::ReduceOp::MIN); }

  at::Tensor gather_rows(const at::Tensor& t) override {
    return guarded("all-gather", [&] { return gather_rows_here(t); });
  }

  void broadcast_(at::Tensor& t, int root) override {
    c10d::BroadcastOptions o;
    o.rootRank = root;
    guarded("broadcast",
            [&] { in_place(t, [&](std::vector<at::Tensor>& v) { return pg_->broadcast(v, o); }); });
  }

  void barrier() override {
    guarded("barrier", [&] { pg_->barrier()->wait(); });
  }

  std::unique_ptr<Pending> start_sum_(at::Tensor& t) override {
    return guarded("all-reduce", [&] { return start_sum_here(t); });
  }

 private:
  // A collective that fails (a peer's connection closed, or no answer within the group's
  // timeout: ddp_timeout_s) is one line naming the collective (saelab's error line names the
  // rank); c10d's own message (its first line) says which connection.
  template <typename F>
  auto guarded(const char* what, F&& f) const -> decltype(f()) {
    try {
      return f();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      std::string why = e.what();
      why = why.substr(0, why.find('\n'));
      throw Error(fmt::format(
          "the {} with the other ranks failed ({}): another rank has stopped (killed, out of "
          "memory, or failed: see its own error) or did not answer within ddp_timeout_s",
          what, why));
    }
  }

  at::Tensor gather_rows_here(const at::Tensor& t) {
    // Row counts first, then every rank's rows padded to the largest count.
    at::Tensor n = torch::full({1}, t.size(0), torch::TensorOptions(torch::kInt64).device(comm_));
    std::vector<at::Tensor> counts = gather_same(n);
    int64_t most = 0;
    for (auto& c : counts) most = std::max(most, c.item<int64_t>());
    std::vector<int64_t> shape = t.sizes().vec();
    shape[0] = most;
    at::Tensor padded = torch::zeros(shape, t.options().device(comm_));
    if (t.size(0) > 0) padded.narrow(0, 0, t.size(0)).copy_(t);
    std::vector<at::Tensor> parts = gather_same(padded);
    for (size_t r = 0; r < parts.size(); ++r)
      parts[r] = parts[r].narrow(0, 0, counts[r].item<int64_t>());
    return torch::cat(parts, 0).to(t.device());
  }

  std::unique_ptr<Pending> start_sum_here(at::Tensor& t) {
    // c10d runs the all-reduce on its own threads (Gloo) or stream (NCCL) until wait().
    // The work handle's type differs between LibTorch versions (ProcessGroup::Work, Work).
    using WorkPtr = decltype(pg_->allreduce(std::declval<std::vector<at::Tensor>&>()));
    struct Started : Pending {
      const C10dCollectives* group = nullptr;
      WorkPtr work;
      at::Tensor comm, target;  // the tensor being reduced, and t when that is a copy
      void wait() override {
        group->guarded("all-reduce", [&] { work->wait(); });
        if (!comm.is_same(target)) target.copy_(comm);
      }
    };
    auto p = std::make_unique<Started>();
    p->group = this;
    p->target = t;
    p->comm = t.to(comm_).contiguous();
    std::vector<at::Tensor> v{p->comm};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    p->work = pg_->allreduce(v, o);
    return p;
  }

  void reduce(at::Tensor& t, c10d::ReduceOp op) {
    c10d::AllreduceOptions o;
    o.reduceOp = op;
    guarded("all-reduce",
            [&] { in_place(t, [&](std::vector<at::Tensor>& v) { return pg_->allreduce(v, o); }); });
  }

  // Runs an in-place collective on t: on a contiguous copy on the group's device when t is not
  // one already, copied back afterwards.
  template <typename Collective>
  void in_place(at::Tensor& t, Collective&& collective) {
    at::Tensor c = t.to(comm_).contiguous();
    std::vector<at::Tensor> v{c};
    collective(v)->wait();
    if (!c.is_same(t)) t.copy_(c);
  }

  std::vector<at::Tensor> gather_same(const at::Tensor& t) {
    std::vector<at::Tensor> in{t.contiguous()};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < size_; ++r) out[0].push_back(torch::empty_like(in[0]));
    pg_->allgather(out, in)->wait();
    return out[0];
  }

  c10::intrusive_ptr<Group> pg_;
  int rank_, size_;
  at::Device comm_;
};

}  // namespace

std::optional<DistEnv> dist_env_from_environment() {
  const char* ws = std::getenv("WORLD_SIZE");
  if (!ws || !*ws) return std::nullopt;
  DistEnv e;
  e.world_size = env_int("WORLD_SIZE", std::nullopt, 1, 1 << 20);
  e.rank = env_int("RANK", std::nullopt, 0, e.world_size - 1);
  e.local_world_size = env_int("LOCAL_WORLD_SIZE", 1, 1, e.world_size);
  e.local_rank = env_int("LOCAL_RANK", 0, 0, e.local_world_size - 1);
  e.master_port = env_int("MASTER_PORT", std::nullopt, 1, 65535);
  const char* addr = std::getenv("MASTER_ADDR");
  if (!addr || !*addr)
    fail("MASTER_ADDR: expected in the environment of a distributed run (WORLD_SIZE is set)");
  e.master_addr = addr;
  const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  e.agent_store = agent && std::string(agent) == "True";
  if (const char* rc = std::getenv("TORCHELASTIC_RESTART_COUNT")) e.restart_count = rc;
  return e;
}

struct DistContext::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  std::chrono::milliseconds timeout;
};

DistContext::DistContext(const DistEnv& env, std::chrono::milliseconds timeout)
    : env_(env), impl_(std::make_unique<Impl>()) {
  impl_->timeout = timeout;
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(env.master_port);
  o.isServer = !env.agent_store && env.rank == 0;
  o.numWorkers = env.world_size;
  o.waitWorkers = !env.agent_store;
  o.timeout = timeout;
  c10::intrusive_ptr<c10d::Store> tcp;
  try {
    tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
  } catch (const std::exception& e) {
    fail("distributed rendezvous at MASTER_ADDR:MASTER_PORT = {}:{} (rank {} of {}) failed: {}",
         env.master_addr, env.master_port, env.rank, env.world_size, e.what());
  }
  if (env.agent_store)
    impl_->store =
        c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + env.restart_count, tcp);
  else
    impl_->store = tcp;
}

DistContext::~DistContext() = default;

std::shared_ptr<Collectives> DistContext::group(const std::string& name, const std::string& device,
                                                std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) timeout = impl_->timeout;
  auto store = c10::make_intrusive<c10d::PrefixStore>("saelab/" + name, impl_->store);
  try {
#if SAELAB_HAVE_NCCL
    if (device.rfind("cuda", 0) == 0) {
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = timeout;
      auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env_.rank, env_.world_size, o);
      return std::make_shared<C10dCollectives<c10d::ProcessGroupNCCL>>(
          pg, env_.rank, env_.world_size, at::Device(at::kCUDA, env_.local_rank));
    }
#endif
    {
      auto o = c10d::ProcessGroupGloo::Options::create(timeout);
      // GLOO_SOCKET_IFNAME (as torch.distributed reads it) picks the network interface.
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      o->devices.push_back(ifname && *ifname
                               ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                               : c10d::ProcessGroupGloo::createDefaultDevice());
      o->threads = 2;
      auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, env_.rank, env_.world_size, o);
      return std::make_shared<C10dCollectives<c10d::ProcessGroupGloo>>(pg, env_.rank,
                                                                       env_.world_size, at::kCPU);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("distributed process group '{}' (rank {} of {}, {}): {}", name, env_.rank, env_.world_size,
         device, e.what());
  }
}

}  // namespace saelab
