// `saelab train --nproc N`: the ranks of a data-parallel run on this machine, started by saelab
// itself rather than by torchrun. Each is this same command line (minus --nproc) in a child
// process with torchrun's variables: RANK = LOCAL_RANK = r, WORLD_SIZE = LOCAL_WORLD_SIZE = N,
// MASTER_ADDR = 127.0.0.1, a free MASTER_PORT, and OMP_NUM_THREADS = cores / N unless set (ranks
// of several OpenMP threads each on too few cores spin against each other).
#pragma once

namespace saelab {

// Starts the N ranks and waits for them. SIGINT / SIGTERM received here are passed on (each rank
// checkpoints and stops); when one rank fails the others are stopped. Returns the exit code: the
// first failing rank's, else 0.
int launch_local_ranks(int nproc);

// A TCP port on 127.0.0.1 that nobody listens on now (the kernel's choice for port 0), for a
// rendezvous store.
int free_local_port();

}  // namespace saelab
