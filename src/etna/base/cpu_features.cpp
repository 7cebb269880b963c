// CPU feature detection: CPUID leaves 1 and 7 with XGETBV (x86), compile-time flags (ARM),
// and the physical core count from sysfs.
#include "etna/base/cpu_features.h"

#include <sched.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace etna::base {
namespace {

#if defined(__x86_64__) || defined(__i386__)
struct Regs {
  uint32_t a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(uint32_t leaf, uint32_t sub) {
  Regs r;
  __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
  return r;
}

uint64_t xgetbv0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

CpuFeatures detect() {
  CpuFeatures f;
  f.x86 = true;
  const Regs v = cpuid(0, 0);
  const uint32_t max_leaf = v.a;
  char vendor[13] = {};
  std::memcpy(vendor, &v.b, 4);
  std::memcpy(vendor + 4, &v.d, 4);
  std::memcpy(vendor + 8, &v.c, 4);
  f.vendor = vendor;
  if (max_leaf < 1) return f;
  const Regs l1 = cpuid(1, 0);
  f.sse3 = l1.c & (1u << 0);
  f.ssse3 = l1.c & (1u << 9);
  const bool osxsave = l1.c & (1u << 27);
  // The OS must save YMM (XCR0 bits 1,2) for AVX and opmask/ZMM (bits 5,6,7) for AVX-512.
  const uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  const bool os_ymm = (xcr0 & 0x6) == 0x6;
  const bool os_zmm = os_ymm && (xcr0 & 0xE0) == 0xE0;
  f.avx = os_ymm && (l1.c & (1u << 28));
  f.fma = f.avx && (l1.c & (1u << 12));
  f.f16c = f.avx && (l1.c & (1u << 29));
  f.popcnt = (l1.c & (1u << 23)) != 0;
  if (max_leaf >= 7) {
    const Regs l7 = cpuid(7, 0);
    f.avx2 = f.avx && (l7.b & (1u << 5));
    f.avx512f = os_zmm && (l7.b & (1u << 16));
    f.avx512bw = f.avx512f && (l7.b & (1u << 30));
    f.avx512vl = f.avx512f && (l7.b & (1u << 31));
    f.avx512vnni = f.avx512f && (l7.c & (1u << 11));
    f.avx512vpopcntdq = f.avx512f && (l7.c & (1u << 14));
    if (l7.a >= 1) {
      const Regs l71 = cpuid(7, 1);
      f.avx512bf16 = f.avx512f && (l71.a & (1u << 5));
    }
  }
  return f;
}
#else
CpuFeatures detect() {
  CpuFeatures f;
#if defined(__aarch64__) || defined(__arm__)
  f.arm = true;
#endif
#if defined(__ARM_NEON)
  f.neon = true;
#endif
#if defined(__ARM_FEATURE_DOTPROD)
  f.dotprod = true;
#endif
  return f;
}
#endif

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

std::string cpu_features_string() {
  const CpuFeatures& f = cpu_features();
  std::string s;
  auto add = [&s](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  std::string head;
  if (f.x86) {
    head = "x86-64 " + f.vendor + ":";
    add(f.sse3, "sse3");
    add(f.ssse3, "ssse3");
    add(f.avx, "avx");
    add(f.avx2, "avx2");
    add(f.fma, "fma");
    add(f.f16c, "f16c");
    add(f.avx512f, "avx512f");
    add(f.avx512bw, "avx512bw");
    add(f.avx512vl, "avx512vl");
    add(f.avx512vnni, "avx512vnni");
    add(f.avx512bf16, "avx512bf16");
    add(f.avx512vpopcntdq, "avx512vpopcntdq");
    if (!f.avx512f) s += s.empty() ? "(no avx512)" : " (no avx512)";
  } else if (f.arm) {
    head = "arm:";
    add(f.neon, "neon");
    add(f.dotprod, "dotprod");
  } else {
    head = "generic:";
  }
  if (s.empty()) s = "(no SIMD extensions used)";
  return head + " " + s;
}

int physical_core_count() {
  static const int count = [] {
    cpu_set_t set;
    CPU_ZERO(&set);
    const bool have_affinity = sched_getaffinity(0, sizeof set, &set) == 0;
    std::set<std::pair<std::string, std::string>> cores;
    int logical = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (have_affinity && !CPU_ISSET(cpu, &set)) continue;
      if (!have_affinity && cpu >= static_cast<int>(std::thread::hardware_concurrency())) break;
      const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
      std::ifstream core(dir + "core_id"), pkg(dir + "physical_package_id");
      std::string c, p;
      ++logical;
      if (!(core >> c) || !(pkg >> p)) continue;
      cores.insert({p, c});
    }
    if (!cores.empty()) return static_cast<int>(cores.size());
    if (logical > 0) return logical;
    return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  }();
  return count;
}

}  // namespace etna::base
