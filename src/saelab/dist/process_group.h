// The ranks of a data-parallel run, as torchrun (torch.distributed.run) starts them or as
// `saelab train --nproc N` starts them locally: the environment they share, the rendezvous, and
// process groups over PyTorch's c10d (Gloo on the CPU; NCCL for CUDA where the LibTorch build has
// it), seen by the rest of saelab through core/collectives.h.
#pragma once
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "saelab/core/collectives.h"

namespace saelab {

// torchrun's worker environment.
struct DistEnv {
  int rank = 0;              // RANK
  int world_size = 1;        // WORLD_SIZE
  int local_rank = 0;        // LOCAL_RANK: the GPU cuda:LOCAL_RANK with device = "cuda"
  int local_world_size = 1;  // LOCAL_WORLD_SIZE
  std::string master_addr = "127.0.0.1";  // MASTER_ADDR
  int master_port = 29500;                // MASTER_PORT
  // TORCHELASTIC_USE_AGENT_STORE=True: torchrun's agent already serves a TCPStore at
  // MASTER_ADDR:MASTER_PORT; every rank joins it as a client, under the key prefix
  // /worker/attempt_<TORCHELASTIC_RESTART_COUNT> as torch.distributed does.
  bool agent_store = false;
  std::string restart_count = "0";
};

// The environment when WORLD_SIZE is set, else nullopt (a single process, as without torchrun).
// A variable that is missing or malformed is a one-line error naming it.
std::optional<DistEnv> dist_env_from_environment();

// The rendezvous store and the process groups made on it. Collectives of different groups are
// not ordered against each other, so a background thread (the activations store's model runs)
// gets a group of its own.
class DistContext {
 public:
  // Joins (rank 0 without torchrun: hosts) the TCPStore; waits up to `timeout` for every rank.
  DistContext(const DistEnv& env, std::chrono::milliseconds timeout);
  ~DistContext();
  const DistEnv& env() const { return env_; }
  // A process group of every rank, named `name` (the same names in the same order on every rank).
  // device "cpu": Gloo; a CUDA device: NCCL when this LibTorch has it, else Gloo. timeout: how
  // long a collective waits for the other ranks (0: the rendezvous timeout); a collective that
  // fails is a one-line saelab::Error naming the collective.
  std::shared_ptr<Collectives> group(const std::string& name, const std::string& device,
                                     std::chrono::milliseconds timeout = {});

 private:
  struct Impl;
  DistEnv env_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace saelab
