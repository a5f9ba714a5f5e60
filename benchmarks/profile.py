"""`python -m benchmarks.profile {train,decode} SHAPE [--quick] [--top N]`: where time goes.

Traces calls of the benchmarked step (`jax.profiler`, Perfetto JSON), sums each XLA thunk's
wall time per call and prints the largest with the instruction's shape and the JAX operation
it came from (the compiled module's `op_name` metadata). XLA:CPU runs independent thunks side
by side on its thread pool and a thunk's span can include waiting for its inputs, so the
figures overlap and add up to more than the step: read them as where the work is, not as a
partition of the wall time. SHAPE is a benchmark shape (`benchmarks.shapes`: mt5-small, 70M;
tiny-32k, tiny-4k with --quick); the weights are random.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\w+\[[\d,]*\])")
_OP_NAME = re.compile(r'op_name="([^"]*)"')


def thunk_seconds(events: Iterable[Mapping[str, Any]], calls: int) -> collections.Counter:
    """Seconds per call of each complete ('X') trace event, Python frames ('$...') left out."""
    out: collections.Counter = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and not str(e.get("name", "")).startswith("$"):
            out[e["name"]] += e.get("dur", 0) / 1e6 / calls
    return out


def instructions(hlo_text: str) -> dict[str, tuple[str, str]]:
    """Instruction name -> (result shape, JAX op_name) from an optimised HLO module's text."""
    out = {}
    for line in hlo_text.splitlines():
        m = _INSTRUCTION.match(line)
        if m:
            op = _OP_NAME.search(line)
            out[m.group(1)] = (m.group(2), op.group(1) if op else "")
    return out


def table(seconds: collections.Counter, where: Mapping[str, tuple[str, str]], top: int,
          skip: Sequence[str] = ("ThunkExecutor", "SlinkyThreadPool", "PjitFunction")) -> str:
    lines = [f"{'ms/call':>9}  {'thunk':<28} {'shape':<22} JAX operation"]
    shown = 0
    for name, s in seconds.most_common():
        if any(name.startswith(p) for p in skip):
            continue
        shape, op = where.get(name, ("", ""))
        lines.append(f"{s * 1e3:9.1f}  {name:<28} {shape:<22} {op[:90]}")
        shown += 1
        if shown == top:
            break
    return "\n".join(lines)


def _trace(fn, args: Sequence[Any], calls: int) -> list[dict]:
    import jax

    jax.block_until_ready(fn(*args))  # warm-up
    with tempfile.TemporaryDirectory() as d:
        jax.profiler.start_trace(d, create_perfetto_trace=True)
        for _ in range(calls):
            jax.block_until_ready(fn(*args))
        jax.profiler.stop_trace()
        path = sorted(glob.glob(f"{d}/**/*.trace.json.gz", recursive=True))[-1]
        with gzip.open(path) as f:
            data = json.load(f)
    return data["traceEvents"] if isinstance(data, dict) else data


def profile(kind: str, shape_name: str, quick: bool, calls: int = 2
            ) -> tuple[collections.Counter, dict[str, tuple[str, str]], float]:
    """(thunk seconds per call, instruction table, wall seconds per call) of one step kind."""
    import time

    import jax
    import jax.numpy as jnp

    from benchmarks import jax_side, shapes
    from train import models, network, steps, train_state

    shape = next((s for s in shapes.train_shapes(quick) if s.name == shape_name), None)
    if shape is None:
        names = [s.name for s in shapes.train_shapes(quick)]
        raise SystemExit(f"error: unknown shape {shape_name!r}; expected one of {names}"
                         + ("" if quick else " (tiny shapes need --quick)"))
    mesh = jax_side._mesh()
    params = network.init_params(shape.config, jax.random.key(0))
    if kind == "train":
        step_fn, layout, tx = jax_side.build_train_step(shape.config, mesh)
        state = jax.device_put(train_state.TrainState(jnp.zeros((), jnp.int32), params,
                                                      tx.init(params)), layout.shardings)
        holder = {"state": state, "flag": jnp.asarray(-1, jnp.int32)}
        batch = jax.device_put(jax_side.random_batch(shape), steps.batch_sharding(mesh))
        rng = jax.random.key(0)
        compiled = step_fn.lower(holder["state"], batch, rng, holder["flag"]).compile()

        def call():
            with step_fn.context():
                holder["state"], _, holder["flag"] = compiled(holder["state"], batch, rng,
                                                              holder["flag"])
            return holder["state"]

        args: tuple = ()
    elif kind == "decode":
        model = models.EncoderDecoderModel(shape.config)
        rules = steps.rules_for()
        shardings = steps.param_shardings(model, mesh, rules)
        params = jax.device_put(params, shardings)
        inputs = jax_side.random_batch(shapes.Shape("decode", shape.config, 32,
                                                    shape.input_length // 2, 1), seed=1)
        batch = jax.device_put({"encoder_input_tokens": inputs["encoder_input_tokens"]},
                               steps.batch_sharding(mesh))
        fn = steps.jit_predict_step(model, mesh, rules, shardings,
                                    max_decode_len=8 if quick else 32)
        with fn.context():
            compiled = fn.jitted.lower(params, batch).compile()
        call, args = compiled, (params, batch)
    else:
        raise SystemExit(f"error: unknown kind {kind!r}; expected train or decode")
    events = _trace(call, args, calls)
    start = time.perf_counter()
    jax.block_until_ready(call(*args))
    wall = time.perf_counter() - start
    return thunk_seconds(events, calls), instructions(compiled.as_text()), wall


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("train", "decode"))
    parser.add_argument("shape")
    parser.add_argument("--quick", action="store_true", help="the tiny benchmark shapes")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    seconds, where, wall = profile(args.kind, args.shape, args.quick)
    print(f"{args.kind} {args.shape}: {wall:.3f} s wall per call (untraced)")
    print(table(seconds, where, args.top))
    return 0


if __name__ == "__main__":
    from xitt_common.quiet import entry_point

    entry_point(libraries=False)  # first: no library lines unless --verbose
    sys.exit(main())
