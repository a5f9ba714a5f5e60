"""Adafactor: equal to optax.adafactor on 2-D kernels, factored by logical axes, t5x layout."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from train import optimizer as opt
from train import partitioning

KEYS = jax.random.split(jax.random.key(0), 8)
PARAMS = {
    "token_embedder": {"embedding": jax.random.normal(KEYS[0], (300, 160))},
    "layers_0": {
        "query": {"kernel": jax.random.normal(KEYS[1], (160, 130))},
        "out": {"kernel": jax.random.normal(KEYS[2], (130, 160))},
        "norm": {"scale": jax.random.normal(KEYS[3], (160,))},
    },
    "relpos_bias": {"rel_embedding": jax.random.normal(KEYS[4], (6, 32))},
}
AXES = {
    "token_embedder": {"embedding": ("vocab", "embed")},
    "layers_0": {"query": {"kernel": ("embed", "joined_kv")},
                 "out": {"kernel": ("joined_kv", "embed")},
                 "norm": {"scale": ("embed",)}},
    "relpos_bias": {"rel_embedding": ("heads", "relpos_buckets")},
}


def _grads(params, i):
    return jax.tree.map(lambda x: (i + 1.0) * jax.random.normal(jax.random.key(i), x.shape),
                        params)


def _run(tx, params, steps):
    state = tx.init(params)
    update = jax.jit(tx.update)
    out = []
    for i in range(steps):
        updates, state = update(_grads(params, i), state, params)
        params = optax.apply_updates(params, updates)
        out.append(updates)
    return params, state, out


def test_matches_optax_adafactor_on_2d_kernels():
    schedule = lambda step: 1e-2 * (1.0 + step)  # the schedule sees the same step count
    ours = opt.adafactor(schedule, AXES)
    ref = optax.adafactor(schedule, decay_rate=0.8, clipping_threshold=1.0,
                          multiply_by_parameter_scale=True, eps=1e-30,
                          min_dim_size_to_factor=128)
    p_ours, s_ours, u_ours = _run(ours, PARAMS, 4)
    p_ref, s_ref, u_ref = _run(ref, PARAMS, 4)
    for a, b in zip(jax.tree.leaves(u_ours), jax.tree.leaves(u_ref)):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p_ours), jax.tree.leaves(p_ref)):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)
    # Same statistics in the same layout (optax keeps v_row/v_col/v as three parallel trees).
    factored = s_ref[0]
    for slot in ("v_row", "v_col", "v"):
        ours_slot = jax.tree.map(lambda d, s=slot: d[s], s_ours.param_states,
                                 is_leaf=lambda d: isinstance(d, dict) and "v" in d)
        for a, b in zip(jax.tree.leaves(ours_slot), jax.tree.leaves(getattr(factored, slot))):
            np.testing.assert_allclose(a, b, rtol=1e-5)
    assert int(s_ours.count) == 4


def test_state_layout_is_t5x():
    state = opt.adafactor(1e-3, AXES).init(PARAMS)
    assert state.count.dtype == jnp.int32 and state.count.shape == ()
    shapes = jax.tree.map(lambda x: x.shape, state.param_states)
    # [vocab, embed]: v_row over embed, v_col over vocab; v a (1,) dummy.
    assert shapes["token_embedder"]["embedding"] == {"v_row": (160,), "v_col": (300,),
                                                     "v": (1,)}
    # Unfactored: full v, dummy rows/columns.
    assert shapes["layers_0"]["norm"]["scale"] == {"v_row": (1,), "v_col": (1,), "v": (160,)}
    assert shapes["relpos_bias"]["rel_embedding"]["v"] == (6, 32)


def test_row_is_embed_whichever_side_it_is_on():
    params = {"a": jnp.ones((200, 300)), "b": jnp.ones((300, 200))}
    axes = {"a": ("embed", "vocab"), "b": ("vocab", "embed")}
    state = opt.adafactor(1e-3, axes).init(params)
    for name in "ab":
        assert state.param_states[name]["v_row"].shape == (200,)
        assert state.param_states[name]["v_col"].shape == (300,)
    state_axes = opt.adafactor_state_axes(axes, params)
    assert state_axes.param_states["b"] == {"v_row": ("embed",), "v_col": ("vocab",),
                                            "v": (None,)}


def test_row_column_naming_does_not_change_the_update():
    grad = jax.random.normal(KEYS[5], (160, 130))
    param = jax.random.normal(KEYS[6], (160, 130))
    config = opt.AdafactorConfig()
    outs = []
    for row, col in (((0,), (1,)), ((1,), (0,))):
        plan = opt.Factoring((0, 1), row, col)
        slots = {"v_row": jnp.zeros(param.shape[row[0]]), "v_col": jnp.zeros(param.shape[col[0]]),
                 "v": jnp.zeros((1,))}
        outs.append(jax.jit(opt._update_one, static_argnums=(3, 6))(
            grad, param, slots, plan, 0.3, 1e-2, config)[0])
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5)


def test_small_dims_are_not_factored():
    params = {"k": jnp.ones((64, 256))}
    state = opt.adafactor(1e-3, {"k": ("embed", "mlp")}).init(params)
    assert state.param_states["k"]["v"].shape == (64, 256)
    assert state.param_states["k"]["v_row"].shape == (1,)


def test_scanned_kernel_factors_within_each_layer():
    layers, embed, mlp = 3, 128, 256
    stacked = {"wi": {"kernel": jax.random.normal(KEYS[7], (layers, embed, mlp))
                      * jnp.arange(1.0, layers + 1)[:, None, None]}}
    tx = opt.adafactor(1e-2, {"wi": {"kernel": ("layers", "embed", "mlp")}})
    state = tx.init(stacked)
    assert state.param_states["wi"]["kernel"]["v_row"].shape == (layers, embed)
    assert state.param_states["wi"]["kernel"]["v_col"].shape == (layers, mlp)
    grads = _grads(stacked, 1)
    # Scale layer 2's gradient up so whole-tensor clipping would differ from per-layer clipping.
    grads = {"wi": {"kernel": grads["wi"]["kernel"].at[2].multiply(50.0)}}
    updates, new_state = jax.jit(tx.update)(grads, state, stacked)
    single = opt.adafactor(1e-2, {"k": ("embed", "mlp")})
    single_update = jax.jit(single.update)
    for i in range(layers):
        p = {"k": stacked["wi"]["kernel"][i]}
        u, s = single_update({"k": grads["wi"]["kernel"][i]}, single.init(p), p)
        np.testing.assert_allclose(updates["wi"]["kernel"][i], u["k"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(new_state.param_states["wi"]["kernel"]["v_row"][i],
                                   s.param_states["k"]["v_row"], rtol=1e-5)


def test_step_offset_restarts_the_decay():
    params = {"k": jnp.ones((4, 4))}
    axes = {"k": ("embed", "mlp")}  # 4 < 128: unfactored, v is the full second moment
    grads = {"k": jnp.full((4, 4), 2.0)}
    old_v = jnp.full((4, 4), 100.0)

    def new_v(step_offset):
        tx = opt.adafactor(1e-3, axes, opt.AdafactorConfig(step_offset=step_offset))
        state = tx.init(params)
        state = opt.AdafactorState(jnp.asarray(10, jnp.int32),
                                   {"k": {**state.param_states["k"], "v": old_v}})
        return float(tx.update(grads, state, params)[1].param_states["k"]["v"][0, 0])

    # step - offset = 0: beta2 = 1 - 1^-0.8 = 0, the old statistic is forgotten.
    assert new_v(10) == pytest.approx(4.0, rel=1e-6)
    beta2 = 1.0 - 11.0 ** -0.8
    assert new_v(0) == pytest.approx(beta2 * 100.0 + (1 - beta2) * 4.0, rel=1e-6)


def test_momentum_and_weight_decay():
    params = {"k": jnp.full((2, 3), 0.5)}
    axes = {"k": ("embed", "mlp")}
    grads = {"k": jnp.ones((2, 3))}
    cfg = opt.AdafactorConfig(beta1=0.9, weight_decay_rate=0.1,
                              multiply_by_parameter_scale=False, clipping_threshold=None)
    tx = opt.adafactor(1e-2, axes, cfg)
    state = tx.init(params)
    assert state.param_states["k"]["m"].shape == (2, 3)
    updates, state = tx.update(grads, state, params)
    # First step: v = g^2 (beta2 = 0), y = 1, m = 0.1 * lr * y; then decay 0.1 * param.
    np.testing.assert_allclose(state.param_states["k"]["m"], 0.1 * 1e-2, rtol=1e-5)
    np.testing.assert_allclose(updates["k"], -(0.1 * 1e-2) - 0.1 * 0.5, rtol=1e-5)


def test_clipping_threshold_bounds_the_update_rms():
    params = {"k": jnp.ones((3, 3))}
    grads = {"k": jnp.array([[1.0, 0, 0], [0, 0, 0], [0, 0, 0]])}
    cfg = opt.AdafactorConfig(multiply_by_parameter_scale=False)
    updates, _ = opt.adafactor(1.0, {"k": ("embed", "mlp")}, cfg).update(
        grads, opt.adafactor(1.0, {"k": ("embed", "mlp")}, cfg).init(params), params)
    # y = g / sqrt(g^2 + eps) is 1 at one entry: rms 1/3 < 1, so unclipped.
    np.testing.assert_allclose(updates["k"][0, 0], -1.0, rtol=1e-6)
    cfg = opt.AdafactorConfig(multiply_by_parameter_scale=False, clipping_threshold=0.1)
    tx = opt.adafactor(1.0, {"k": ("embed", "mlp")}, cfg)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(jnp.sqrt(jnp.mean(updates["k"] ** 2)), 0.1, rtol=1e-5)


def test_errors_name_the_parameter():
    with pytest.raises(ValueError, match=r"w dim 1: logical axis 'bogus'"):
        opt.adafactor(1e-3, {"w": ("embed", "bogus")}).init({"w": jnp.ones((2, 2))})
    with pytest.raises(ValueError, match=r"no axes for \['x'\]"):
        opt.adafactor(1e-3, {"w": ("embed",)}).init({"w": jnp.ones(2), "x": jnp.ones(2)})
    with pytest.raises(ValueError, match="decay_rate"):
        opt.AdafactorConfig(decay_rate=0.0)


def test_state_shardings_follow_the_parameters():
    mesh = partitioning.create_mesh(data_axis_size=2, model_axis_size=4)
    rules = partitioning.standard_logical_axis_rules("2d")
    params = {"emb": jax.ShapeDtypeStruct((256, 128), jnp.float32),
              "wi": jax.ShapeDtypeStruct((2, 128, 512), jnp.float32),
              "norm": jax.ShapeDtypeStruct((128,), jnp.float32)}
    axes = {"emb": ("vocab", "embed"), "wi": ("layers", "embed", "mlp"), "norm": ("embed",)}
    shardings = opt.optimizer_state_shardings(axes, params, mesh, rules)
    assert shardings.count.spec == P()
    emb = shardings.param_states["emb"]
    assert (emb["v_row"].spec, emb["v_col"].spec, emb["v"].spec) == (P("data"), P("model"),
                                                                     P(None))
    assert shardings.param_states["wi"]["v_row"].spec == P(None, "data")
    assert shardings.param_states["wi"]["v_col"].spec == P(None, "model")
    assert shardings.param_states["norm"]["v"].spec == P("data")
    # init under jit lands on exactly these shardings.
    tx = opt.adafactor(1e-3, axes)
    real = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), params)
    state = jax.jit(tx.init, out_shardings=shardings)(real)
    assert state.param_states["wi"]["v_col"].sharding.spec == P(None, "model")
    assert state.param_states["wi"]["v_col"].addressable_shards[0].data.shape == (2, 128)
    # A sharded update keeps every statistic on its parameter's sharding.
    param_shardings = partitioning.logical_to_sharding(axes, params, mesh, rules)
    update = jax.jit(tx.update, out_shardings=(param_shardings, shardings))
    _, new_state = update(real, state, real)
    assert new_state.param_states["emb"]["v_row"].sharding.spec == P("data")
    assert new_state.param_states["norm"]["v"].addressable_shards[0].data.shape == (64,)


def test_real_network_tree():
    from train import network
    from train.config import MT5Config

    cfg = MT5Config(vocab_size=512, emb_dim=128, num_heads=2, head_dim=64, mlp_dim=256,
                    num_encoder_layers=1, num_decoder_layers=1)
    shapes, axes = network.abstract_params(cfg), network.param_axes(cfg)
    state = opt.adafactor_state_shapes(shapes, axes)
    emb = state.param_states["token_embedder"]["embedding"]
    assert (emb["v_row"].shape, emb["v_col"].shape) == ((128,), (512,))
    wo = state.param_states["encoder"]["layers_0"]["mlp"]["wo"]["kernel"]
    assert (wo["v_row"].shape, wo["v_col"].shape) == ((128,), (256,))
    mesh = partitioning.create_mesh(num_partitions=2, devices=jax.devices()[:4])
    shardings = opt.optimizer_state_shardings(
        axes, shapes, mesh, partitioning.standard_logical_axis_rules("1d"))
    assert (shardings.param_states["decoder"]["logits_dense"]["kernel"]["v_col"].spec
            == P("model"))


# ---------------------------------------------------------------- schedules (train/schedules.py)

def test_schedules_hand_computed():
    from train import schedules

    assert float(schedules.constant(1e-3)(123456)) == pytest.approx(1e-3)
    rsqrt = schedules.rsqrt(1.0, warmup_steps=10_000)
    assert float(rsqrt(0)) == pytest.approx(0.01)          # 1/sqrt(10000) during warm-up
    assert float(rsqrt(1_000_000)) == pytest.approx(0.001)  # 1/sqrt(1e6)
    warm = schedules.linear_warmup(1e-3, 100)
    assert [float(warm(s)) for s in (0, 50, 100, 5000)] == pytest.approx([0, 5e-4, 1e-3, 1e-3])
    warm_rsqrt = schedules.linear_warmup(1.0, 100, decay="rsqrt")
    assert float(warm_rsqrt(400)) == pytest.approx(0.5)  # sqrt(100 / 400)
    lin = schedules.linear_warmup(1.0, 10, decay="linear", total_steps=110,
                                  final_learning_rate=0.0, start_step=1_000_000)
    assert [float(lin(1_000_000 + s)) for s in (5, 10, 60, 110, 500)] == pytest.approx(
        [0.5, 1.0, 0.5, 0.0, 0.0])
    with pytest.raises(ValueError, match="total_steps"):
        schedules.linear_warmup(1.0, 10, decay="linear")
    with pytest.raises(ValueError, match="decay='cosine'"):
        schedules.linear_warmup(1.0, 10, decay="cosine")


def test_scanned_statistics_are_the_stacked_unscanned_ones():
    """train.scan stacks slots like params; that is only valid if orientation agrees."""
    import dataclasses

    from train import network
    from train.config import MT5Config

    # embed 192 > joined_kv 128 (like mT5-Small): the row is joined_kv in both layouts.
    cfg = MT5Config(vocab_size=512, emb_dim=192, num_heads=2, head_dim=64, mlp_dim=256,
                    num_encoder_layers=2, num_decoder_layers=2)
    flat = {}
    for scan in (False, True):
        c = dataclasses.replace(cfg, scan_layers=scan)
        state = opt.adafactor_state_shapes(network.abstract_params(c), network.param_axes(c))
        flat[scan] = partitioning.flatten_paths(state.param_states)
    q = "encoder/layers_0/attention/query/kernel"
    assert flat[False][f"{q}/v_row"].shape == (128,)
    for path, leaf in flat[True].items():
        if not path.startswith("encoder/layers/") or leaf.shape == (1,):
            continue
        unscanned = flat[False][path.replace("encoder/layers/", "encoder/layers_0/")]
        assert leaf.shape == (2, *unscanned.shape), path
