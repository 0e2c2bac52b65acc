"""Row-sparse Adam (train/row_adam.py): optax.adam where every row is touched, no motion where none is; and
keep_zero_rows (train/state.py): static Gaussians stay static."""

import jax.numpy as jnp
import numpy as np
import optax

from any4d_jax.train.row_adam import row_adam
from any4d_jax.train.state import keep_zero_rows


def _grads(seed, shape=(5, 6)):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def test_dense_gradients_give_optax_adam_exactly_with_a_schedule():
    sched = optax.exponential_decay(1e-2, 10, 0.1)
    tx, ref = row_adam(sched), optax.adam(sched)
    p = jnp.ones((5, 6))
    s, sr = tx.init(p), ref.init(p)
    for i in range(6):
        u, s = tx.update(_grads(i), s)
        ur, sr = ref.update(_grads(i), sr)
        np.testing.assert_allclose(u, ur, rtol=1e-5, atol=1e-9)


def test_untouched_rows_keep_their_values_and_moments_and_a_touched_row_steps_by_lr():
    lr = 1e-3
    tx = row_adam(lr)
    s = tx.init(jnp.zeros((4, 6)))
    g = jnp.zeros((4, 6)).at[1].set(_grads(0, (6,)))
    u, s = tx.update(g, s)
    # The first step of Adam moves each coordinate by lr * g / (|g| + eps): lr in the gradient's sign.
    np.testing.assert_allclose(u[1], -lr * np.sign(g[1]), rtol=1e-4)
    np.testing.assert_array_equal(np.asarray(u)[[0, 2, 3]], 0.0)
    before = s
    # Nine steps touching only row 2: plain Adam would keep moving row 1 (its momentum); row_adam does not.
    for i in range(9):
        u, s = tx.update(jnp.zeros((4, 6)).at[2].set(_grads(i + 1, (6,))), s)
        np.testing.assert_array_equal(np.asarray(u)[[0, 1, 3]], 0.0)
    np.testing.assert_array_equal(s.mu[1], before.mu[1])
    np.testing.assert_array_equal(s.nu[1], before.nu[1])
    np.testing.assert_array_equal(np.asarray(s.count), [0, 1, 9, 0])
    assert int(s.step) == 10
    ref = optax.adam(lr)
    sr = ref.init(jnp.zeros((4, 6)))
    _, sr = ref.update(g, sr)
    moved, _ = ref.update(jnp.zeros((4, 6)), sr)
    assert np.all(np.abs(np.asarray(moved)[1]) > 0.5 * lr)  # the drift row_adam removes


def test_a_row_seen_every_other_step_is_stepped_as_a_dense_adam_on_its_own_steps():
    lr = 1e-2
    tx, ref = row_adam(lr), optax.adam(lr)
    s = tx.init(jnp.zeros((2, 6)))
    sr = ref.init(jnp.zeros((1, 6)))
    for i in range(4):
        g = _grads(i, (1, 6))
        u, s = tx.update(jnp.zeros((2, 6)).at[0].set(g[0]), s)
        ur, sr = ref.update(g, sr)
        np.testing.assert_allclose(u[0], ur[0], rtol=1e-5)
        u, s = tx.update(jnp.zeros((2, 6)).at[1].set(g[0]), s)
        np.testing.assert_array_equal(u[0], 0.0)


def test_keep_zero_rows_leaves_all_zero_rows_where_they_are():
    """motion.static_stays_static: a Gaussian whose motion weights are all 0 gets no update, however large its
    gradient; a row with any nonzero weight is updated exactly as by the inner optimizer."""
    p = jnp.asarray([[0.0, 0.0, 0.0], [0.0, 0.5, 0.0], [1.0, 2.0, 3.0]])
    tx, ref = keep_zero_rows(optax.adam(0.1)), optax.adam(0.1)
    s, sr = tx.init(p), ref.init(p)
    for i in range(3):
        g = _grads(i, (3, 3))
        u, s = tx.update(g, s, p)
        ur, sr = ref.update(g, sr, p)
        np.testing.assert_array_equal(np.asarray(u[0]), 0.0)
        np.testing.assert_allclose(np.asarray(u[1:]), np.asarray(ur[1:]), rtol=1e-6)
        p = optax.apply_updates(p, u)
    np.testing.assert_array_equal(np.asarray(p[0]), 0.0)
