"""Microkernel libraries: register-tiled GEMM, prepacked GEMM and direct convolutions, emitted
as LLVM IR. They know nothing of ops; the lowerings in codegen/kernels/ call them."""
