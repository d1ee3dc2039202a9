"""The shared shape checks: clear errors that name the shape, float dtypes out."""

import jax.numpy as jnp
import numpy as np
import pytest

from avips_jax import inputs


def test_contexts_of_the_right_shape_come_back_as_floats():
    c = inputs.check_contexts(np.arange(6).reshape(2, 3), 3)
    assert c.shape == (2, 3) and c.dtype == jnp.float32


@pytest.mark.parametrize("shape", [(3,), (2, 4), (1, 2, 3)])
def test_contexts_of_a_wrong_shape_raise_naming_it(shape):
    with pytest.raises(ValueError, match=rf"contexts must have shape \(T, 3\), got \({shape[0]}"):
        inputs.check_contexts(np.zeros(shape), 3)


def test_points_take_the_contexts_dtype():
    c = inputs.check_contexts(np.zeros((2, 3)), 3)
    x = inputs.check_points(np.zeros((2, 5, 7), np.int32), c, 7)
    assert x.shape == (2, 5, 7) and x.dtype == c.dtype


@pytest.mark.parametrize("shape", [(2, 5), (3, 5, 7), (2, 5, 6)])
def test_points_of_a_wrong_shape_raise_naming_it(shape):
    c = inputs.check_contexts(np.zeros((2, 3)), 3)
    with pytest.raises(ValueError, match=r"x must have shape \(T=2, n, d=7\), got"):
        inputs.check_points(np.zeros(shape), c, 7)
