// The AVX-512 GEMM kernel list built with emulated 16-lane vectors (two AVX2 registers each), so
// gemm_test.cpp can check those tile shapes on machines without AVX-512.
#define KILN_ISA_NS avx512emu
#define KILN_ISA_NAME "avx512emu"
#define KILN_GEMM_EMULATE_AVX512 1
#include "kiln/ops/cpu/gemm_kernels_isa.cpp"
