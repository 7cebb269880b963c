#include "etna/store/distance.h"

#include <cmath>

#include <cstdlib>

#include "etna/base/cpu_features.h"
#include "etna/base/error.h"
#include "etna/base/vector_ops.h"
#include "etna/store/distance_kernels.h"

namespace etna::store::detail {

namespace {

float dot_scalar(const float* a, const float* b, size_t n) { return base::dot_f32(a, b, n); }

float l2sq_scalar(const float* a, const float* b, size_t n) {
  float s0 = 0, s1 = 0;
  size_t i = 0;
  for (; i + 2 <= n; i += 2) {
    float d0 = a[i] - b[i], d1 = a[i + 1] - b[i + 1];
    s0 += d0 * d0;
    s1 += d1 * d1;
  }
  for (; i < n; ++i) s0 += (a[i] - b[i]) * (a[i] - b[i]);
  return s0 + s1;
}

float l1_scalar(const float* a, const float* b, size_t n) {
  float s = 0;
  for (size_t i = 0; i < n; ++i) s += std::fabs(a[i] - b[i]);
  return s;
}

int32_t dot_u8_scalar(const uint8_t* a, const uint8_t* b, size_t n) {
  int32_t s = 0;
  for (size_t i = 0; i < n; ++i) s += int32_t(a[i]) * int32_t(b[i]);
  return s;
}

int32_t l2sq_u8_scalar(const uint8_t* a, const uint8_t* b, size_t n) {
  int32_t s = 0;
  for (size_t i = 0; i < n; ++i) {
    int32_t d = int32_t(a[i]) - int32_t(b[i]);
    s += d * d;
  }
  return s;
}

int32_t l1_u8_scalar(const uint8_t* a, const uint8_t* b, size_t n) {
  int32_t s = 0;
  for (size_t i = 0; i < n; ++i) s += std::abs(int32_t(a[i]) - int32_t(b[i]));
  return s;
}

// Without POPCNT (baseline x86-64) the compiler expands this to the SWAR bit count.
uint32_t hamming_scalar(const uint64_t* a, const uint64_t* b, size_t words) {
  uint32_t n = 0;
  for (size_t i = 0; i < words; ++i) n += uint32_t(__builtin_popcountll(a[i] ^ b[i]));
  return n;
}

constexpr Kernels kScalar{dot_scalar, l2sq_scalar, l1_scalar, dot_u8_scalar, l2sq_u8_scalar, l1_u8_scalar,
                          hamming_scalar, "scalar"};

#if defined(__x86_64__)
bool cpu_has_avx2() {
  const auto& f = base::cpu_features();
  return f.avx2 && f.fma && f.popcnt;
}
bool cpu_has_avx512() {
  const auto& f = base::cpu_features();
  return cpu_has_avx2() && f.avx512f && f.avx512bw && f.avx512vl;
}
constexpr Kernels kAvx2{avx2::dot, avx2::l2sq, avx2::l1, avx2::dot_u8, avx2::l2sq_u8, avx2::l1_u8, avx2::hamming, "avx2"};
constexpr Kernels kAvx512{avx512::dot,  avx512::l2sq,  avx512::l1,      avx512::dot_u8,
                          avx512::l2sq_u8, avx512::l1_u8, avx512::hamming, "avx512"};
constexpr Kernels with_vnni(Kernels k, const char* name) {
  k.dot_u8 = avx512vnni::dot_u8, k.l2sq_u8 = avx512vnni::l2sq_u8, k.name = name;  // l1_u8: AVX-512BW's vpsadbw
  return k;
}
constexpr Kernels with_vpopcntdq(Kernels k, const char* name) {
  k.hamming = avx512vpopcntdq::hamming, k.name = name;
  return k;
}
constexpr Kernels kAvx512Vnni = with_vnni(kAvx512, "avx512+vnni");
constexpr Kernels kAvx512Popcnt = with_vpopcntdq(kAvx512, "avx512+vpopcntdq");
constexpr Kernels kAvx512Both = with_vpopcntdq(kAvx512Vnni, "avx512+vnni+vpopcntdq");
#endif

// The best AVX-512 variant this CPU runs (the "avx512" that ETNA_KERNELS names).
const Kernels* best_avx512() {
#if defined(__x86_64__)
  if (!cpu_has_avx512()) return nullptr;
  const auto& f = base::cpu_features();
  if (f.avx512vnni && f.avx512vpopcntdq) return &kAvx512Both;
  if (f.avx512vnni) return &kAvx512Vnni;
  if (f.avx512vpopcntdq) return &kAvx512Popcnt;
  return &kAvx512;
#else
  return nullptr;
#endif
}

const Kernels& choose() {
  if (const char* env = std::getenv("ETNA_KERNELS"); env && *env) {
    const std::string name = env;
    if (name != "scalar" && name != "avx2" && name != "avx512")
      fail(ErrorKind::invalid_argument, "ETNA_KERNELS={} is not a kernel set (scalar, avx2 or avx512)", name);
    const Kernels* k = name == "avx512" ? best_avx512() : kernel_variant(name);
    if (!k)
      fail(ErrorKind::unsupported, "ETNA_KERNELS={}: this CPU or build cannot run it (CPU: {})", name,
           base::cpu_features_string());
    return *k;
  }
  if (const Kernels* k = best_avx512()) return *k;
  if (const Kernels* k = kernel_variant("avx2")) return *k;
  return kScalar;
}

}  // namespace

const Kernels& kernels() {
  static const Kernels& k = choose();
  return k;
}

std::vector<std::string> kernel_variant_names() {
  return {"scalar", "avx2", "avx512", "avx512+vnni", "avx512+vpopcntdq", "avx512+vnni+vpopcntdq"};
}

const Kernels* kernel_variant(const std::string& name) {
  if (name == "scalar") return &kScalar;
#if defined(__x86_64__)
  const auto& f = base::cpu_features();
  if (name == "avx2") return cpu_has_avx2() ? &kAvx2 : nullptr;
  if (!cpu_has_avx512()) return nullptr;
  if (name == "avx512") return &kAvx512;
  if (name == "avx512+vnni") return f.avx512vnni ? &kAvx512Vnni : nullptr;
  if (name == "avx512+vpopcntdq") return f.avx512vpopcntdq ? &kAvx512Popcnt : nullptr;
  if (name == "avx512+vnni+vpopcntdq") return f.avx512vnni && f.avx512vpopcntdq ? &kAvx512Both : nullptr;
#endif
  return nullptr;
}

float score_of(Distance d, float distance) {
  switch (d) {
    case Distance::Cosine:
    case Distance::Dot: return -distance;
    case Distance::Euclid: return std::sqrt(std::max(distance, 0.0f));
    default: return distance;
  }
}

float distance_of(Distance d, float score) {
  switch (d) {
    case Distance::Cosine:
    case Distance::Dot: return -score;
    case Distance::Euclid: return score < 0 ? -1.0f : score * score;
    default: return score;
  }
}

void normalize(float* v, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += double(v[i]) * v[i];
  if (s <= 0) return;
  float inv = static_cast<float>(1.0 / std::sqrt(s));
  for (size_t i = 0; i < n; ++i) v[i] *= inv;
}

}  // namespace etna::store::detail
