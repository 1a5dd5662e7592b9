"""Row scatters that move whole rows equal numpy's fancy assignment."""
import numpy as np
import pytest

from amp.descriptor._rows import put_rows


@pytest.mark.parametrize("shape", [(10,), (10, 1), (10, 3), (10, 3, 4)])
def test_put_rows_equals_fancy_assignment(shape):
    rng = np.random.default_rng(len(shape))
    out = rng.random(shape)
    expected = out.copy()
    index = rng.permutation(10)[:6]
    rows = rng.random((6,) + shape[1:])
    expected[index] = rows
    put_rows(out, index, rows)
    assert np.array_equal(out, expected)


def test_put_rows_converts_dtype_and_refuses_strided_output():
    out = np.zeros((4, 3))
    put_rows(out, np.array([2, 0]), np.array([[1, 2, 3], [4, 5, 6]]))
    assert out.tolist() == [[4, 5, 6], [0, 0, 0], [1, 2, 3], [0, 0, 0]]
    with pytest.raises(ValueError, match="C-contiguous"):
        put_rows(np.zeros((4, 6))[:, ::2], np.array([0]), np.ones((1, 3)))
