// Sustained memory read bandwidth of this machine, measured in-process, so that benchmarks can
// state how close a memory-bound loop (token generation) comes to what the memory can deliver.
#pragma once
#include <cstddef>

namespace etna {

struct ReadBandwidth {
  double best_gbps = 0.0;    // fastest pass, 1e9 bytes per second
  double median_gbps = 0.0;  // median pass
  size_t bytes = 0;          // bytes read per pass
  int threads = 0;
};

// Reads a buffer of `bytes` bytes (make it several times the last-level cache) with `n_threads`
// threads, each summing its own contiguous slice, `passes` times after one untimed pass.
// Throws etna::Error (invalid_argument) for n_threads < 1, passes < 1 or bytes < 1 MiB.
ReadBandwidth measure_read_bandwidth(int n_threads, size_t bytes = size_t{256} << 20, int passes = 5);

}  // namespace etna
