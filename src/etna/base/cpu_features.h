// What the CPU this process runs on can do, detected once (x86: CPUID plus XGETBV for the
// operating system's register-state support; ARM: compile-time NEON). Used to pick kernels.
#pragma once
#include <string>

namespace etna::base {

struct CpuFeatures {
  bool x86 = false;
  bool sse3 = false, ssse3 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false, avx512bf16 = false;
  bool popcnt = false, avx512vpopcntdq = false;
  bool arm = false, neon = false, dotprod = false;
  std::string vendor;  // CPUID vendor string on x86, "" elsewhere
};

// Detected once, then cached. Features the OS does not save on context switch are reported off.
const CpuFeatures& cpu_features();

// One line for `etna info --cpu`, e.g. "x86-64 AuthenticAMD: avx2 fma f16c (no avx512)".
std::string cpu_features_string();

// Physical cores available to this process (hyper-threads counted once); at least 1.
int physical_core_count();

}  // namespace etna::base
