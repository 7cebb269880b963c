// The x86 kernel set for AVX2 + FMA + F16C.
// CMake compiles this file (only) with the matching -m flags; see x86_kernels.inc.
#if defined(__x86_64__)
#define ETNA_X86_NS avx2

#include "etna/tensor/x86_kernels.inc"
#endif
