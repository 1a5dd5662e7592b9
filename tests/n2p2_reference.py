"""A plain, loop-based implementation of n2p2's symmetry functions.

Written from n2p2's definitions (``SymFnc*::calculate``, ``CutoffFunction``,
``CoreFunction``, ``CompactFunction``) one neighbour and one pair at a
time, with scalar ``math`` calls, so that the vectorised kernels of
:mod:`amp.descriptor.n2p2` can be checked against something that shares
none of their code. Slow: for a handful of atoms only.
"""
import itertools
import math

import numpy as np
from ase.data import atomic_numbers

E = math.e
TANH_PRE = ((E + 1 / E) / (E - 1 / E)) ** 3


def core(kind, x):
    if kind == "p1":
        return (2 * x - 3) * x * x + 1
    if kind == "p2":
        return ((15 - 6 * x) * x - 10) * x ** 3 + 1
    if kind == "p3":
        return (x * (x * (20 * x - 70) + 84) - 35) * x ** 4 + 1
    if kind == "p4":
        return (x * (x * ((315 - 70 * x) * x - 540) + 420) - 126) * x ** 5 + 1
    if kind == "e":
        return E * math.exp(1 / (x * x - 1)) if x < 1 else 0.0
    raise ValueError(kind)


def cutoff(kind, alpha, rc, r):
    """n2p2's cutoff function ``cutoff_type`` at distance ``r``."""
    if r >= rc:
        return 0.0
    if kind == 0:
        return 1.0
    if kind in (2, 3):
        value = math.tanh(1 - r / rc) ** 3
        return value * (TANH_PRE if kind == 3 else 1.0)
    inner = alpha * rc
    if r < inner:
        return 1.0
    x = (r - inner) / (rc - inner)
    if kind == 1:
        return 0.5 * (math.cos(math.pi * x) + 1)
    return core({4: "e", 5: "p1", 6: "p2", 7: "p3", 8: "p4"}[kind], x)


def compact(subtype, left, right, a, asymmetric=None):
    """n2p2's compact function of ``subtype`` on ``(left, right)``."""
    if not left < a < right:
        return 0.0
    center, width = (left + right) / 2, (right - left) / 2
    x = abs(a - center) / width
    if asymmetric is None:
        asymmetric = subtype.endswith("a")
    if asymmetric:
        x = (2 - x) * x
    return core(subtype[:2] if subtype != "e" else "e", x)


def neighbours(atoms, rc):
    """``[(j, vector), ...]`` of every atom: all atoms and periodic images
    closer than ``rc`` (found by trying every image in range)."""
    positions = atoms.get_positions()
    cell = np.asarray(atoms.cell)
    reach = [int(math.ceil(rc / np.linalg.norm(cell[k]) + 1)) if atoms.pbc[k]
             else 0 for k in range(3)]
    shifts = list(itertools.product(*[range(-n, n + 1) for n in reach]))
    out = []
    for i in range(len(atoms)):
        found = []
        for j in range(len(atoms)):
            for shift in shifts:
                vector = positions[j] + np.dot(shift, cell) - positions[i]
                d = float(np.linalg.norm(vector))
                if (j == i and not any(shift)) or d >= rc:
                    continue
                found.append((j, vector, d))
        out.append(found)
    return out


def function_value(f, symbols, neighbour_list, cutoff_type, alpha):
    """One function ``f`` (a SymmetryFunction) of one centre."""
    z = {s: atomic_numbers[s] for s in set(symbols)}

    def fc(r):
        return cutoff(cutoff_type, alpha, f.rc, r)

    total = 0.0
    if f.type in (2, 12, 20, 23):
        for j, _, r in neighbour_list:
            element = symbols[j]
            if f.type in (2, 20) and element != f.e1:
                continue
            weight = z[element] if f.type in (12, 23) else 1.0
            if f.type in (2, 12):
                total += weight * math.exp(-f.eta * (r - f.rs) ** 2) * fc(r)
            else:
                total += weight * compact(f.subtype, f.rl, f.rc, r)
        return total
    for (j, rj, a), (k, rk, b) in itertools.combinations(neighbour_list, 2):
        ej, ek = symbols[j], symbols[k]
        if f.type in (3, 9, 21, 22) and sorted(
                [ej, ek], key=z.get) != sorted([f.e1, f.e2], key=z.get):
            continue
        weight = z[ej] * z[ek] if f.type in (13, 24, 25) else 1.0
        d = float(np.linalg.norm(rk - rj))
        cos = float(np.dot(rj, rk)) / (a * b)
        narrow = f.type in (3, 13, 21, 24)
        if f.type in (3, 9, 13):
            if a >= f.rc or b >= f.rc or (narrow and d >= f.rc):
                continue
            base = 1 + f.lam * cos
            if base <= 0:
                continue
            square = (a - f.rs) ** 2 + (b - f.rs) ** 2
            radial = fc(a) * fc(b)
            if narrow:
                square += (d - f.rs) ** 2
                radial *= fc(d)
            total += weight * 2 ** (1 - f.zeta) * base ** f.zeta * \
                math.exp(-f.eta * square) * radial
            continue
        if not (f.rl < a < f.rc and f.rl < b < f.rc):
            continue
        low = f.rl * f.rl if f.rl > 0 else 0.0
        if narrow and not (low < d * d < f.rc * f.rc):
            continue
        if not -1 < cos < 1:
            continue
        theta = math.acos(cos)
        left = f.angle_left * math.pi / 180
        right = f.angle_right * math.pi / 180
        if not left <= theta <= right:
            continue
        radial = compact(f.subtype, f.rl, f.rc, a) * compact(
            f.subtype, f.rl, f.rc, b)
        if narrow:
            radial *= compact(f.subtype, f.rl, f.rc, d)
        if theta == left or theta == right:
            angular = 0.0
        else:
            angular = compact(f.subtype, left, right, theta,
                              asymmetric=False)
        total += weight * radial * angular
    return total


def fingerprints(atoms, functions, cutoff_type, alpha=0.0):
    """``{element: (n_atoms_of_element, n_functions) array}`` of the
    functions (each element's in the given order)."""
    symbols = atoms.get_chemical_symbols()
    rc = max(f.rc for fs in functions.values() for f in fs)
    lists = neighbours(atoms, rc)
    out = {}
    for element, own in functions.items():
        rows = [[function_value(f, symbols, lists[i], cutoff_type, alpha)
                 for f in own]
                for i in range(len(atoms)) if symbols[i] == element]
        out[element] = np.array(rows, dtype=float).reshape(-1, len(own))
    return out
