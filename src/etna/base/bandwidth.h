// Sustained memory read bandwidth of this machine, measured in-process, so that benchmarks can
// state how close a memory-bound loop (token generation) comes to what the memory can deliver.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace etna {

struct ReadBandwidth {
  double best_gbps = 0.0;    // fastest pass, 1e9 bytes per second
  double median_gbps = 0.0;  // median pass
  size_t bytes = 0;          // bytes read per pass
  int threads = 0;
};

// A buffer of `bytes` bytes (make it several times the last-level cache), on transparent huge
// pages where the kernel offers them for madvise'd memory (as the model's weights are, so that
// both stream through the same kind of pages), written once on construction so every page is
// backed, that measure() streams with `n_threads` threads, each
// summing its own contiguous slice. Keeping the buffer lets a benchmark measure the bandwidth
// right beside each timed run: on a shared or virtual machine the bandwidth drifts by tens of
// per cent within seconds, so a ratio of two figures taken minutes apart says little.
// Throws etna::Error (invalid_argument) for n_threads < 1 or bytes < 1 MiB.
class ReadBandwidthProbe {
 public:
  ReadBandwidthProbe(int n_threads, size_t bytes = size_t{256} << 20);
  ~ReadBandwidthProbe();
  ReadBandwidthProbe(const ReadBandwidthProbe&) = delete;
  ReadBandwidthProbe& operator=(const ReadBandwidthProbe&) = delete;

  // `passes` timed passes after one untimed one. Throws invalid_argument for passes < 1.
  ReadBandwidth measure(int passes) const;

 private:
  struct Unmap {
    size_t bytes;
    void operator()(uint64_t* p) const;
  };
  std::unique_ptr<uint64_t, Unmap> buf_;
  size_t n_words_;
  int n_threads_;
};

// One probe, measured once: ReadBandwidthProbe(n_threads, bytes).measure(passes).
ReadBandwidth measure_read_bandwidth(int n_threads, size_t bytes = size_t{256} << 20, int passes = 5);

}  // namespace etna
