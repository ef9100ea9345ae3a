"""LLVM intrinsics Numba does not expose: leading-zero count and uint64 -> float64 bitcast.

The float parser builds IEEE-754 bit patterns directly; without a bitcast it would need a
scratch array per call.
"""

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic


@intrinsic
def leading_zeros(typingctx, x):
    """Count leading zero bits of a uint64 (64 for zero)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctlz(args[0], ir.Constant(ir.IntType(1), 0))

    return types.uint64(types.uint64), codegen


@intrinsic
def float64_from_bits(typingctx, x):
    """Reinterpret a uint64 bit pattern as a float64."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.uint64), codegen
