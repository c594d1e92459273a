"""Compiles every Triton kernel for the given GPU architectures without a GPU (Triton's
ahead-of-time path with its bundled ptxas). Run as a script, outside TRITON_INTERPRET:
the interpreter replaces the kernels with Python functions that cannot be compiled."""

import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from kanfast.triton import bspline, channel_stats, coupled_gather, kan_conv_implicit


def compile_kernel(kernel, pointers, constexprs, arch):
    signature = {name: "constexpr" if name in constexprs else pointers.get(name, "i64") for name in kernel.arg_names}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=dict(bspline.LAUNCH_OPTIONS))
    assert compiled.asm["cubin"], f"{kernel.fn.__name__}: no GPU binary"


def main(archs):
    for arch in archs:
        for storage in ("fp32", "bf16", "fp16", "fp64"):
            compute = "fp64" if storage == "fp64" else "fp32"
            tables = {"knots_ptr": f"*{compute}", "recips_ptr": f"*{compute}"}
            constexprs = {"NK": 12, "K": 3, "BLOCK": bspline.BLOCK}
            compile_kernel(bspline._bases_forward_kernel,
                           {"x_ptr": f"*{storage}", "out_ptr": f"*{storage}", **tables}, constexprs, arch)
            compile_kernel(bspline._bases_backward_kernel,
                           {"x_ptr": f"*{storage}", "grad_ptr": f"*{storage}", "gx_ptr": f"*{storage}", **tables},
                           {**constexprs, "ACCUMULATE": True}, arch)
            conv = {"HAS_BASE": True, "HAS_BIAS": True, "ACT": 1, "IEEE": storage == "fp32",
                    "ACC64": storage == "fp64", "DOT_F32": False, "NK": 12, "K": 3,
                    "BLOCK_M": kan_conv_implicit.BLOCK_M, "BLOCK_N": kan_conv_implicit.BLOCK_N,
                    "BLOCK_C": kan_conv_implicit.BLOCK_C}
            compile_kernel(kan_conv_implicit._kan_conv2d_forward_kernel,
                           {"x_ptr": f"*{storage}", "w_ptr": f"*{storage}", "bias_ptr": f"*{storage}",
                            "y_ptr": f"*{storage}", **tables}, conv, arch)
            compile_kernel(channel_stats._channel_stats_kernel,
                           {"x_ptr": f"*{storage}", "g_ptr": f"*{storage}", "acc_ptr": f"*{compute}",
                            "cnt_ptr": "*i32", "hist_ptr": "*i32", "lo": "fp32", "scale": "fp32"},
                           {"HAS_GRAD": True, "HAS_HIST": True, "ACC64": storage == "fp64",
                            "BLOCK": channel_stats.BLOCK}, arch)
            compile_kernel(coupled_gather._coupled_gather_kernel,
                           {"src_ptr": f"*{storage}", "dst_ptr": f"*{storage}", "index_ptr": "*i64",
                            "scale_ptr": f"*{storage}", "fresh_ptr": "*u8"},
                           {"HAS_SCALE": True, "HAS_FRESH": True, "NARROW": storage in ("bf16", "fp16"),
                            "BLOCK": coupled_gather.BLOCK}, arch)
            print(f"sm_{arch} {storage}: ok", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [80, 90])
