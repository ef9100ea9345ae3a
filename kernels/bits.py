"""LLVM intrinsics Numba does not expose: leading-zero, trailing-zero and set-bit counts,
uint64 -> float64 bitcast, unaligned 8-byte loads and stores, a 16-byte string-scan mask,
reference-free array views and prefetch.

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
def trailing_zeros(typingctx, x):
    """Count trailing zero bits of a uint64 (64 for zero)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return types.uint64(types.uint64), codegen


@intrinsic
def popcount(typingctx, x):
    """Number of set bits of a uint64."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


@intrinsic
def float64_from_bits(typingctx, x):
    """Reinterpret a uint64 bit pattern as a float64."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.uint64), codegen


@intrinsic
def unowned(typingctx, arr):
    """A view of ``arr`` that carries no reference count (its meminfo is null).

    Numba increments and decrements an array's reference count, atomically, each time the
    array is passed to a jitted function; with a dozen arrays and several calls per value
    that was most of the parse time. Kernels take unowned views of their inputs once, at
    entry, while the caller's references keep the memory alive for the whole call.
    """
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, signature, args):
        src = context.make_array(signature.args[0])(context, builder, value=args[0])
        out = context.make_array(signature.return_type)(context, builder)
        context.populate_array(
            out,
            data=src.data,
            shape=src.shape,
            strides=src.strides,
            itemsize=src.itemsize,
            meminfo=None,
            parent=None,
        )
        return out._getvalue()

    return arr(arr), codegen


@intrinsic
def load_u64(typingctx, arr, idx):
    """The 8 bytes arr[idx:idx+8] as one little-endian uint64, from any alignment.

    The caller guarantees idx + 8 <= len(arr). Lets string scanning test 8 bytes at once.
    """
    if not (isinstance(arr, types.Array) and arr.dtype == types.uint8 and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, value=args[0])
        ptr = builder.gep(ary.data, [args[1]])
        wide = builder.bitcast(ptr, ir.IntType(64).as_pointer())
        return builder.load(wide, align=1)

    return types.uint64(arr, idx), codegen


@intrinsic
def string_special16(typingctx, arr, idx):
    """Bit i set for each byte of arr[idx:idx+16] that a JSON string scan must stop at: a
    quote, a backslash, a control character or non-ASCII (one SSE2 compare-and-movemask).

    The caller guarantees idx + 16 <= len(arr). One signed compare (< 0x20) covers both
    the control characters and the bytes >= 0x80, which are negative as int8.
    """
    if not (isinstance(arr, types.Array) and arr.dtype == types.uint8 and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, value=args[0])
        lanes = ir.VectorType(ir.IntType(8), 16)
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), lanes.as_pointer())
        v = builder.load(ptr, align=1)

        def splat(byte):
            return ir.Constant(lanes, [byte] * 16)

        hits = builder.or_(
            builder.or_(builder.icmp_unsigned("==", v, splat(0x22)), builder.icmp_unsigned("==", v, splat(0x5C))),
            builder.icmp_signed("<", v, splat(0x20)),
        )
        return builder.zext(builder.bitcast(hits, ir.IntType(16)), ir.IntType(64))

    return types.uint64(arr, idx), codegen


@intrinsic
def store_u64(typingctx, arr, idx, value):
    """Write ``value`` as 8 little-endian bytes at arr[idx:idx+8], at any alignment.

    The caller guarantees idx + 8 <= len(arr). Lets gathers copy 8 bytes per step.
    """
    if not (isinstance(arr, types.Array) and arr.dtype == types.uint8 and value == types.uint64):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, value=args[0])
        ptr = builder.gep(ary.data, [args[1]])
        builder.store(args[2], builder.bitcast(ptr, ir.IntType(64).as_pointer()), align=1)
        return context.get_dummy_value()

    return types.void(arr, idx, value), codegen


@intrinsic
def prefetch(typingctx, arr, idx):
    """Ask the CPU to start loading the cache line holding arr[idx] into every cache level.

    A hint: it never faults, so idx may point past the end of arr.
    """
    if not (isinstance(arr, types.Array) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, value=args[0])
        i8p = ir.IntType(8).as_pointer()
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), i8p)
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", fnty=fnty)
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, idx), codegen
