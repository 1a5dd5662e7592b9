import numpy as np
import pytest

from amp.descriptor.cutoffs import Cosine, Polynomial, dict2cutoff


@pytest.mark.parametrize("cutoff", [Cosine(6.5), Polynomial(6.5),
                                    Polynomial(5.0, gamma=2)])
def test_values_and_derivatives(cutoff):
    R = np.linspace(0.1, 7.0, 200)
    Rc = cutoff.Rc
    values = cutoff(R)
    assert np.all(values[R > Rc] == 0.0)
    assert cutoff(0.0) == pytest.approx(1.0)
    assert cutoff(Rc) == pytest.approx(0.0, abs=1e-15)
    h = 1e-6
    inside = R < Rc - 1e-3
    fd = (cutoff(R + h) - cutoff(R - h)) / (2 * h)
    np.testing.assert_allclose(cutoff.prime(R)[inside], fd[inside], atol=1e-8)
    assert np.all(cutoff.prime(R)[R > Rc] == 0.0)


def test_formulas():
    R = np.array([1.0, 3.3, 6.0])
    np.testing.assert_allclose(Cosine(6.5)(R),
                               0.5 * (np.cos(np.pi * R / 6.5) + 1.0))
    x = R / 6.5
    np.testing.assert_allclose(Polynomial(6.5)(R),
                               1 + 4 * x ** 5 - 5 * x ** 4)


def test_dict_round_trip_and_repr():
    for cutoff in (Cosine(5.0), Polynomial(6.0, gamma=3.0)):
        again = dict2cutoff(cutoff.todict())
        assert again == cutoff and again.todict() == cutoff.todict()
        assert str(cutoff.Rc)[:3] in repr(cutoff)
    assert dict2cutoff(4.0) == Cosine(4.0)
    assert Cosine(6.5).todict() == {"name": "Cosine", "kwargs": {"Rc": 6.5}}


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_bad_radius(bad):
    with pytest.raises(ValueError, match="cutoff radius"):
        Cosine(bad)
    with pytest.raises(ValueError, match="cutoff radius"):
        Polynomial(bad)


def test_unknown_cutoff():
    with pytest.raises(ValueError, match="unknown cutoff"):
        dict2cutoff({"name": "Step", "kwargs": {"Rc": 3}})
    with pytest.raises(TypeError):
        dict2cutoff("six")


@pytest.mark.parametrize("cutoff", [Cosine(6.5), Cosine(3.0), Polynomial(6.5),
                                    Polynomial(5.0, gamma=2.5)])
def test_squared_distance_forms(cutoff):
    # The triplet kernel evaluates cutoffs from R^2 (polynomials for Cosine).
    R = np.concatenate([np.linspace(0.05, 1.2 * cutoff.Rc, 5001),
                        [cutoff.Rc]])
    np.testing.assert_allclose(cutoff.squared(R * R), cutoff(R),
                               rtol=0, atol=3e-15)
    np.testing.assert_allclose(cutoff.prime_over_r_squared(R * R),
                               cutoff.prime(R) / R, rtol=1e-13, atol=3e-15)
    assert np.all(cutoff.squared(R[R > cutoff.Rc] ** 2) == 0.0)


@pytest.mark.parametrize("eta", [0.0, 0.005, 0.5, 4.0])
def test_gaussian_times_cosine_as_one_series(eta):
    # The G4 value path's fused factor: exp(-eta R^2 / Rc^2) fc(R) from R^2.
    cutoff = Cosine(6.5)
    R = np.linspace(0.0, 7.0, 3001)
    expected = np.exp(-eta * R * R / 6.5 ** 2) * cutoff(R)
    got = cutoff.gaussian_squared(R * R, eta)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-14)
    assert np.all(got[R > 6.5] == 0.0)


def test_gaussian_series_falls_back_for_large_eta():
    # No short accurate series: the caller multiplies exp and squared().
    assert Cosine(6.5).gaussian_squared(np.array([1.0]), 400.0) is None
    assert Polynomial(6.5).gaussian_squared(np.array([1.0]), 0.005) is None


@pytest.mark.parametrize("cutoff", [Cosine(6.5), Cosine(3.0), Polynomial(6.5)])
def test_inside_skips_only_the_range_test(cutoff):
    # inside=True (the triplet kernel's R_jk < Rc) gives the same numbers
    # within the cutoff, and a continuation that is still ~0 just past it.
    R = np.linspace(0.05, cutoff.Rc, 2001)
    R2 = R * R
    for form in ("squared", "prime_over_r_squared"):
        method = getattr(cutoff, form)
        assert np.array_equal(method(R2, inside=True), method(R2))
    for eta in (0.005, 1.0):
        for form in ("gaussian_squared", "gaussian_prime_over_r_squared"):
            method = getattr(cutoff, form)
            inside, checked = method(R2, eta, inside=True), method(R2, eta)
            assert (inside is None) == (checked is None)
            if inside is not None:
                assert np.array_equal(inside, checked)
    just_past = (cutoff.Rc * (1 + 1e-15)) ** 2
    assert abs(cutoff.squared(np.array([just_past]), inside=True)[0]) < 1e-13


@pytest.mark.parametrize("cutoff", [Cosine(5.0), Polynomial(5.0, gamma=4)])
@pytest.mark.parametrize("inside", [True, False])
def test_squared_forms_write_into_out(cutoff, inside):
    """The kernels pass scratch arrays as ``out``: the results are the
    same bits as without, and zero beyond Rc unless ``inside``."""
    R2 = np.linspace(0.0, 30.0, 101) if not inside else \
        np.linspace(0.0, 25.0, 101)
    for method, args in (("squared", ()), ("prime_over_r_squared", ()),
                         ("gaussian_squared", (0.05,)),
                         ("gaussian_prime_over_r_squared", (0.05,))):
        expected = getattr(cutoff, method)(R2, *args, inside=inside)
        out = np.full_like(R2, np.nan)
        result = getattr(cutoff, method)(R2, *args, inside=inside, out=out)
        if expected is None:  # no series for this cutoff
            assert result is None
            continue
        assert result is out
        np.testing.assert_array_equal(out, expected)
        if not inside:
            assert (out[R2 > 25.0] == 0.0).all()
