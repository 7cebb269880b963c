// The x86 kernel set for AVX-512 F/BW/VL + VNNI: int8 products by VPDPBUSD.
// CMake compiles this file (only) with the matching -m flags; see x86_kernels.inc.
#if defined(__x86_64__)
#define ETNA_X86_NS avx512vnni
#define ETNA_X86_VNNI 1
#include "etna/tensor/x86_kernels.inc"
#endif
