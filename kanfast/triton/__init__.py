"""Triton kernels (GPU; on CPU tensors under TRITON_INTERPRET=1, for tests). Imported on
first use by kanfast.ops, so that kanfast itself never needs triton."""
