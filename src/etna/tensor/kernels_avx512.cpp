// The x86 kernel set for AVX-512 F/BW/VL (plus AVX2, FMA, F16C): the AVX2 algorithms with EVEX encodings and 32 vector registers.
// CMake compiles this file (only) with the matching -m flags; see x86_kernels.inc.
#if defined(__x86_64__)
#define ETNA_X86_NS avx512

#include "etna/tensor/x86_kernels.inc"
#endif
