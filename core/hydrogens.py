"""Riding hydrogens from geometry: how many H each atom carries (AFIX code) and where they sit.

The rules follow SHELXL's HFIX conventions: the bond count, bond lengths and angles at an atom
decide between AFIX 13 (R3C-H), 23 (R2CH2), 43 (aromatic/amide X-H), 93 (=XH2), 137 (rotating
XH3), 147 (rotating O-H) and 163 (alkyne C-H); where the data are at hand, the difference
density settles the N-H the bond lengths leave in doubt. X-H distances are SHELXL's, with its
low-temperature values below -20 C; Uiso(H) = 1.2 Ueq(pivot), 1.5 for XH3, OH and water.
Rotating groups take the azimuth that points an OH hydrogen at a hydrogen-bond acceptor, or else
that puts the H atoms on the highest difference density. Water (an O with no heavy neighbour, or
an aqua ligand: one metal at >= 2.0 A) has no idealising code in SHELXL: its two H are placed
from hydrogen bonds and difference density and ride as AFIX 3 (as placed), as does any group
smtbx cannot constrain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from cctbx import xray

from aisolve.core.geometry import Contact, bonds, contacts, images_near

# X-H distances (A): (room temperature, below -20 C), from the SHELXL manual.
DISTANCES = {
    ("C", 13): (0.98, 1.00), ("C", 23): (0.97, 0.99), ("C", 137): (0.96, 0.98), ("C", 43): (0.93, 0.95),
    ("C", 93): (0.93, 0.95), ("C", 163): (0.93, 0.95),
    ("N", 13): (0.91, 0.93), ("N", 23): (0.90, 0.92), ("N", 137): (0.89, 0.91), ("N", 43): (0.86, 0.88),
    ("N", 93): (0.86, 0.88),
    ("O", 147): (0.82, 0.84), ("S", 147): (1.20, 1.20), ("B", 13): (1.10, 1.12),
}
AS_PLACED = 3  # AFIX 3: riding on the pivot with the positions as placed (no idealisation)
WATER = AS_PLACED  # SHELXL idealises no water
WATER_HOH = 104.5  # degrees
WATER_SWEEPS = 4
NH_DENSITY_SIGMA = 3.0  # difference density that puts an H on an N the geometry leaves in doubt
NH_ABSENT_SIGMA = 1.0  # ... and below which an N-H the geometry gave is dropped
AQUA_MIN = 2.0  # A: one metal at least this far makes an O an aqua ligand (M-OH is shorter)
DISTANCES[("O", WATER)] = DISTANCES[("O", 147)]
N_H = {13: 1, 23: 2, 43: 1, 93: 2, 137: 3, 147: 1, 163: 1, WATER: 2}
U_FACTOR = {137: 1.5, 147: 1.5, WATER: 1.5}
NON_METALS = {"H", "D", "He", "B", "C", "N", "O", "F", "Ne", "Si", "P", "S", "Cl", "Ar", "As", "Se", "Br", "Kr",
              "Te", "I", "Xe"}
ACCEPTORS = ("O", "N", "F", "Cl", "Br", "S")
HBOND_H_ACCEPTOR = 2.3  # A: an O-H azimuth with its H this close to an acceptor makes a hydrogen bond


@dataclass
class HydrogenGroup:
    pivot: int  # index of the heavy atom in the structure
    afix: int
    sites_frac: list[tuple[float, float, float]]
    distance: float
    u_factor: float
    # per H, below 1 where the pivot sits on a symmetry element (see _symmetry_occupancies)
    occupancies: list[float] | None = None


def _symmetry_occupancies(xs: xray.structure, group: HydrogenGroup, tolerance: float = 0.3) -> list[float]:
    """Occupancies that give a group on a special pivot its own H count once the pivot's site
    symmetry is applied. The images of the group either coincide with it (an ordered NH3 with one
    H on a mirror: the other two are each other's images, each listed H then half-occupied, and an
    H on the element itself full) or do not (the group is disordered over the element, as SHELXL's
    PART -1: each H 1/(number of copies)). In general 1 / (copies x listed H whose images cover it)."""
    n = len(group.sites_frac)
    if not xs.site_symmetry_table().is_special_position(group.pivot):
        return [1.0] * n
    orth = np.array(xs.unit_cell().orthogonalization_matrix()).reshape(3, 3)
    ops = list(xs.site_symmetry_table().get(group.pivot).matrices())
    sites = np.array(group.sites_frac)
    images = np.array([[op * tuple(x) for x in sites] for op in ops])  # (n_ops, n, 3)

    def close(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # (.., 3) x (m, 3) -> (.., m) within tolerance
        diff = a[..., None, :] - b
        diff -= np.round(diff)
        return np.linalg.norm(np.einsum("...k,lk->...l", diff, orth), axis=-1) < tolerance
    # covers[j, h]: some image of listed H j sits on listed H h
    covers = close(images, sites).any(axis=0)
    copies: list[np.ndarray] = []
    for image in images:
        if not any(close(image, c).any(axis=1).all() for c in copies):
            copies.append(image)
    return [1.0 / (len(copies) * int(covers[:, h].sum())) for h in range(n)]


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 1e-9 else v


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.acos(max(-1.0, min(1.0, float(np.dot(_unit(a), _unit(b)))))))


def afix_for(element: str, pivot: np.ndarray, neighbours: list[tuple[str, np.ndarray]]) -> int:
    """The AFIX code (0: no H) for an atom given its heavy-atom neighbours (element, Cartesian site)."""
    n = len(neighbours)
    vecs = [site - pivot for _, site in neighbours]
    lengths = [float(np.linalg.norm(v)) for v in vecs]
    if element == "C":
        if n >= 4:
            return 0
        if n == 3:
            angle_sum = _angle(vecs[0], vecs[1]) + _angle(vecs[0], vecs[2]) + _angle(vecs[1], vecs[2])
            return 0 if angle_sum > 350 else 13
        if n == 2:
            angle = _angle(vecs[0], vecs[1])
            if angle > 165:
                return 0
            return 43 if angle > 114 and min(lengths) < 1.45 else 23
        if n == 1:
            other, d = neighbours[0][0], lengths[0]
            if d < 1.25:
                return 0 if other == "N" else 163
            return 93 if d < 1.40 else 137
        return 0
    if element == "N":
        if n >= 3:
            return 0
        if n == 2:
            return 0 if max(lengths) < 1.38 or _angle(vecs[0], vecs[1]) > 165 else 43
        if n == 1:
            d = lengths[0]
            if d < 1.20:
                return 0
            return 93 if d < 1.38 else 137
        return 0
    if element == "O":
        # a metal it coordinates takes none of its H: an alcohol on Ca keeps its OH
        organic = [(e, d) for (e, _), d in zip(neighbours, lengths) if e in NON_METALS]
        metal = [d for (e, _), d in zip(neighbours, lengths) if e not in NON_METALS]
        if not organic:
            if not metal or (len(metal) == 1 and metal[0] >= AQUA_MIN):
                return WATER
            # M-OH (1.6-2.0 A) rides as a hydroxyl; M=O and bridging O carry none
            return 147 if len(metal) == 1 and metal[0] > 1.60 else 0
        if len(organic) == 1:
            other, d = organic[0]
            limit = {"C": 1.30, "N": 1.30, "S": 1.50, "P": 1.53}.get(other, 1.60)
            return 147 if d > limit else 0
        return 0
    return 0


def _perpendicular_frame(axis: np.ndarray, reference: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if reference is None or np.linalg.norm(np.cross(axis, reference)) < 1e-6:
        reference = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = _unit(np.cross(axis, reference))
    e2 = np.cross(axis, e1)
    return e1, e2


def hydrogen_sites(afix: int, pivot: np.ndarray, neighbours: list[np.ndarray], d: float,
                   azimuth: float = 0.0, second_neighbour: np.ndarray | None = None) -> list[np.ndarray]:
    """Cartesian H positions for one AFIX group; `azimuth` (radians) turns rotating groups."""
    u = [_unit(n - pivot) for n in neighbours]
    if afix == 13 and len(u) == 3:
        # SHELXL: the three X-C-H angles equal, i.e. h.u_i the same for every bond
        try:
            h = _unit(np.linalg.solve(np.array(u), np.ones(3)))
        except np.linalg.LinAlgError:  # planar neighbours: the normal is all there is
            h = _unit(np.cross(u[0] - u[1], u[0] - u[2]))
        return [pivot + d * (-h if np.dot(h, sum(u)) > 0 else h)]
    if afix in (13, 43):
        return [pivot + d * _unit(-sum(u))]
    if afix == 23:
        bis = _unit(-(u[0] + u[1]))
        normal = _unit(np.cross(u[0], u[1]))
        half = math.radians(109.47 / 2)
        return [pivot + d * (math.cos(half) * bis + s * math.sin(half) * normal) for s in (1, -1)]
    if afix == 163:
        return [pivot - d * u[0]]
    axis = -u[0]  # from the neighbour through the pivot
    ref = None if second_neighbour is None else second_neighbour - neighbours[0]
    e1, e2 = _perpendicular_frame(axis, ref)
    if afix == 93:
        # planar: two H at 120 deg from the X-pivot bond, in the plane of X's substituents
        return [pivot + d * (math.cos(math.radians(60)) * axis + s * math.sin(math.radians(60)) * e2)
                for s in (1, -1)]
    tet = math.radians(180 - 109.47)
    n_h = 3 if afix == 137 else 1
    return [pivot + d * (math.cos(tet) * axis + math.sin(tet) * (math.cos(azimuth + k * 2 * math.pi / 3) * e1
                                                                  + math.sin(azimuth + k * 2 * math.pi / 3) * e2))
            for k in range(n_h)]


@dataclass
class _Surroundings:
    """What placing any atom's H needs, worked out once per structure."""
    xs: xray.structure
    elements: list[str]
    bond_table: list[list[Contact]]
    near: list[list[Contact]]
    cold: bool
    special: list[bool]

    @classmethod
    def of(cls, xs: xray.structure, temperature_c: float | None) -> "_Surroundings":
        elements = [sc.scattering_type for sc in xs.scatterers()]
        return cls(xs, elements, bonds(xs, elements), contacts(xs, cutoff=3.2),
                   temperature_c is not None and temperature_c < -20,
                   [xs.site_symmetry_table().is_special_position(i) for i in range(len(elements))])

    def heavy_neighbours(self, i: int) -> tuple[list[Contact], list[tuple[str, np.ndarray]]]:
        uc = self.xs.unit_cell()
        nbrs = [c for c in self.bond_table[i] if self.elements[c.j] not in ("H", "D")]
        return nbrs, [(self.elements[c.j], np.array(uc.orthogonalize(c.site))) for c in nbrs]


def _group(env: _Surroundings, i: int, afix: int, density) -> HydrogenGroup | None:
    """The riding group of atom i under AFIX `afix` (None for no H or a code with no X-H distance);
    waters are placed together elsewhere."""
    el = env.elements[i]
    if afix in (0, WATER) or (el, afix) not in DISTANCES:
        return None
    uc = env.xs.unit_cell()
    pivot = np.array(uc.orthogonalize(env.xs.scatterers()[i].site))
    nbrs, nb_cart = env.heavy_neighbours(i)
    d = DISTANCES[(el, afix)][1 if env.cold else 0]
    if el == "O" and afix == 147 and any(e in NON_METALS for e, _ in nb_cart):
        # a coordinated hydroxyl: the O-H rotates about its bond to the organic neighbour
        keep = [k for k, (e, _) in enumerate(nb_cart) if e in NON_METALS]
        nbrs, nb_cart = [nbrs[k] for k in keep], [nb_cart[k] for k in keep]
    if not nbrs:
        return None
    second = _second_neighbour(env.bond_table, env.elements, nbrs, uc, pivot)
    nb_sites = [s for _, s in nb_cart]
    if afix in (137, 147):
        cart = _best_rotation(afix, pivot, nb_sites, d, second, uc, density,
                              _acceptors(env.near[i], nbrs, env.elements, uc) if afix == 147 else [])
    else:
        cart = hydrogen_sites(afix, pivot, nb_sites, d, 0.0, second)
    return HydrogenGroup(i, afix, [tuple(uc.fractionalize(tuple(c))) for c in cart], d, U_FACTOR.get(afix, 1.2))


def candidate_groups(xs: xray.structure, temperature_c: float | None = None,
                     density: Callable[[tuple[float, float, float]], float] | None = None,
                     max_h: int = 4) -> dict[int, dict[int, HydrogenGroup]]:
    """For every atom bonded to a non-metal, the group each count 1..max_h would give it (AFIX
    code as for a predicted count, rotating groups turned onto the density): what the difference
    density is read at to weigh the counts. Counts beyond the valence or that the geometry cannot
    place are absent; waters (no heavy neighbour, or aqua ligands) are left out, their H being
    placed around one another."""
    env = _Surroundings.of(xs, temperature_c)
    uc = xs.unit_cell()
    out: dict[int, dict[int, HydrogenGroup]] = {}
    for i, el in enumerate(env.elements):
        nbrs, nb_cart = env.heavy_neighbours(i)
        if not any(e in NON_METALS for e, _ in nb_cart):
            continue
        geometric = afix_for(el, np.array(uc.orthogonalize(xs.scatterers()[i].site)), nb_cart)
        if geometric == WATER:
            continue
        for k in range(1, min(max_h, MAX_VALENCE.get(el, 0) - len(nbrs)) + 1):
            g = _group(env, i, afix_for_count(el, k, geometric, len(nbrs)), density)
            if g is not None and len(g.sites_frac) == k:
                out.setdefault(i, {})[k] = g
    return out


def place_hydrogens(xs: xray.structure, temperature_c: float | None = None,
                    density: Callable[[tuple[float, float, float]], float] | None = None,
                    counts: list[int | None] | None = None) -> list[HydrogenGroup]:
    """H groups for every heavy atom of `xs` (which holds no H).

    `density(site_frac)` scores rotating-group azimuths (difference density); `counts` may fix the
    number of H per atom (from a network), in which case the AFIX code follows that count.
    """
    env = _Surroundings.of(xs, temperature_c)
    uc = xs.unit_cell()
    elements, cold = env.elements, env.cold
    sites = xs.sites_frac()
    groups: list[HydrogenGroup] = []
    waters: list[tuple[int, float, list[np.ndarray]]] = []  # placed last, around the H already there
    for i, el in enumerate(elements):
        pivot = np.array(uc.orthogonalize(sites[i]))
        nbrs, nb_cart = env.heavy_neighbours(i)
        afix = afix_for(el, pivot, nb_cart)
        if counts is not None and counts[i] is not None:
            afix = afix_for_count(el, counts[i], afix, len(nbrs))
        elif el == "N" and afix in (0, 43) and density is not None:
            afix = _nh_from_density(afix, pivot, nb_cart, uc, density, cold)
        if afix == WATER:
            if not env.special[i]:  # else the site's own symmetry would copy the H: for the crystallographer
                waters.append((i, DISTANCES[(el, WATER)][1 if cold else 0],
                               [site for (e, site) in nb_cart if e not in NON_METALS]))
            continue
        group = _group(env, i, afix, density)
        if group is not None:
            groups.append(group)
    # Waters bond to each other: each is placed around every other H, in sweeps until none moves.
    placed: dict[int, HydrogenGroup] = {}
    # the density around each water, tabulated once for all sweeps
    on_density = {i: _sphere_density(np.array(uc.orthogonalize(sites[i])), d, uc, density) for i, d, _ in waters}
    for _sweep in range(WATER_SWEEPS):
        moved = False
        for i, d, metals in waters:
            pivot = np.array(uc.orthogonalize(sites[i]))
            acceptor_rows = _acceptor_contacts(env.near[i], [], elements)
            taken = {id(c) for c in acceptor_rows}
            others = [np.array(uc.orthogonalize(c.site)) for c in env.near[i] if id(c) not in taken]
            acceptors = [np.array(uc.orthogonalize(c.site)) for c in acceptor_rows]
            around = [h for g in groups + [g for k, g in placed.items() if k != i] for h in g.sites_frac]
            near_h = list(images_near(xs.crystal_symmetry(), around, sites[i], 3.0)) if around else []
            cart = water_sites(pivot, d, acceptors, others, metals, uc, density, near_h, on_density[i])
            group = HydrogenGroup(i, WATER, [tuple(uc.fractionalize(tuple(c))) for c in cart], d, U_FACTOR[WATER])
            moved |= i not in placed or not np.allclose(placed[i].sites_frac, group.sites_frac)
            placed[i] = group
        if not moved:
            break
    out = sorted(groups + list(placed.values()), key=lambda g: g.pivot)
    for g in out:
        g.occupancies = _symmetry_occupancies(xs, g)
    return out


def _nh_from_density(afix: int, pivot: np.ndarray, nb_cart: list[tuple[str, np.ndarray]], uc, density: Callable,
                     cold: bool) -> int:
    """The difference density settles an N-H the bond lengths leave in doubt (pyrrole-type N-H
    beside pyridine-type N, R3NH+ beside R3N, C=N-N): an H the geometry rules gave (AFIX 43) is
    dropped where its site shows no density (< 1 sigma), one they did not give (43 or 13) is added
    where it shows significant density (>= 3 sigma). An N bound to a metal is left to the rules: its
    free direction points at the metal."""
    if not nb_cart or any(e not in NON_METALS for e, _ in nb_cart):
        return afix
    vecs = [site - pivot for _, site in nb_cart]
    if len(vecs) == 2 and _angle(vecs[0], vecs[1]) < 165:
        code = 43
    elif len(vecs) == 3 and sum(_angle(a, b) for a, b in ((vecs[0], vecs[1]), (vecs[0], vecs[2]),
                                                             (vecs[1], vecs[2]))) < 350:
        code = 13
    else:
        return afix
    d = DISTANCES[("N", code)][1 if cold else 0]
    site = hydrogen_sites(code, pivot, [s for _, s in nb_cart], d)[0]
    rho = density(tuple(uc.fractionalize(tuple(site))))
    if afix == 0:
        return code if rho >= NH_DENSITY_SIGMA else 0
    return 0 if rho < NH_ABSENT_SIGMA else afix


def afix_for_count(element: str, n_h: int, geometric: int, n_bonds: int) -> int:
    """AFIX code for a predicted H count, keeping the geometric choice when it agrees."""
    if n_h == 0:
        return 0
    if geometric and N_H.get(geometric) == n_h:
        return geometric
    if n_h == 3:
        return 137
    if n_h == 2 and element == "O" and n_bonds <= 1:
        return WATER
    if n_h == 2:
        return 93 if n_bonds == 1 else 23
    if element == "O":
        return 147
    return 43 if n_bonds == 2 else (13 if n_bonds == 3 else 163)


def _second_neighbour(bond_table, elements, nbrs: list[Contact], uc, pivot: np.ndarray) -> np.ndarray | None:
    """A heavy neighbour of the pivot's first neighbour (not the pivot): fixes the plane of =XH2."""
    first = nbrs[0]
    for c in bond_table[first.j]:
        if elements[c.j] in ("H", "D"):
            continue
        # c.site is relative to atom j's own position; first.op moves it next to the pivot
        cand = np.array(uc.orthogonalize(first.op * c.site))
        if np.linalg.norm(cand - pivot) > 0.5:
            return cand
    return None


def _acceptor_contacts(row: list[Contact], bonded: list[Contact], elements) -> list[Contact]:
    """Contacts of an atom that may accept a hydrogen bond from it (unbonded O, N, F, ... at 2.45-3.2 A)."""
    bonded_keys = {(c.j, round(c.distance, 4)) for c in bonded}
    return [c for c in row if elements[c.j] in ACCEPTORS and 2.45 < c.distance < 3.2
            and (c.j, round(c.distance, 4)) not in bonded_keys]


def _acceptors(row: list[Contact], bonded: list[Contact], elements, uc) -> list[np.ndarray]:
    return [np.array(uc.orthogonalize(c.site)) for c in _acceptor_contacts(row, bonded, elements)]


def _best_rotation(afix, pivot, nb_sites, d, second, uc, density, acceptors) -> list[np.ndarray]:
    steps = [math.radians(a) for a in range(0, 360 if afix == 147 else 120, 5)]
    if acceptors:
        def h_to_acceptor(az):
            h = hydrogen_sites(afix, pivot, nb_sites, d, az, second)[0]
            return min(np.linalg.norm(h - a) for a in acceptors)
        bonded = [az for az in steps if h_to_acceptor(az) <= HBOND_H_ACCEPTOR]
        if density is not None and bonded:
            # several acceptors within reach: the difference density says which hydrogen bond it is
            steps = bonded
        else:
            # the azimuth whose H is closest to an acceptor: the hydrogen bond
            def score(az):
                return -h_to_acceptor(az)
            return hydrogen_sites(afix, pivot, nb_sites, d, max(steps, key=score), second)
    if density is not None:
        def score(az):
            return sum(density(tuple(uc.fractionalize(tuple(h))))
                       for h in hydrogen_sites(afix, pivot, nb_sites, d, az, second))
    else:
        return hydrogen_sites(afix, pivot, nb_sites, d, 0.0, second)
    best = max(steps, key=score)
    return hydrogen_sites(afix, pivot, nb_sites, d, best, second)


def _sphere(n: int) -> np.ndarray:
    """n nearly even unit vectors (Fibonacci lattice)."""
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    phi = math.pi * (1 + 5 ** 0.5) * k
    r = np.sqrt(1 - z ** 2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def water_sites(pivot: np.ndarray, d: float, acceptors: list[np.ndarray], others: list[np.ndarray],
                metals: list[np.ndarray], uc, density: Callable | None,
                placed_h: list[np.ndarray] = (), on_density: Callable | None = None) -> list[np.ndarray]:
    """Two H on a water O at `d` and 104.5 deg: the orientation whose O-H point straightest at
    acceptors (full credit on the O...A line, none beyond 30 deg) and whose H sit on the highest
    difference density, with no H closer than 2.0 A to another atom or 1.8 A to an H already
    placed (an acceptor whose own H points here donates to this water, not the other way round)
    and every M-O-H angle >= 100 deg for the metals it binds. `on_density`: the density on the
    sphere as _sphere_density tabulates it, when already at hand."""
    first = np.concatenate([np.array([_unit(a - pivot) for a in acceptors]).reshape(-1, 3), _sphere(240)])
    ref = np.where(np.abs(first[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    e1 = np.cross(first, ref)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(first, e1)
    az = np.radians(np.arange(0, 360, 5))[None, :, None]
    tilt = math.radians(WATER_HOH)
    u1 = np.broadcast_to(first[:, None, :], (len(first), az.shape[1], 3))
    u2 = math.cos(tilt) * u1 + math.sin(tilt) * (np.cos(az) * e1[:, None, :] + np.sin(az) * e2[:, None, :])
    on_density = on_density or _sphere_density(pivot, d, uc, density)

    def score(u: np.ndarray) -> np.ndarray:  # (n, m, 3) unit vectors of one H -> (n, m)
        h = pivot + d * u
        out = np.zeros(u.shape[:2])
        for group, limit in ((others, 2.0), (list(placed_h), 1.8)):
            if len(group):
                near = np.linalg.norm(h[:, :, None, :] - np.array(group)[None, None], axis=3).min(axis=2)
                out -= 10.0 * (near < limit)
        for m in metals:
            out -= 10.0 * (u @ _unit(m - pivot) > math.cos(math.radians(100)))
        if acceptors:
            cos = np.stack([u @ _unit(a - pivot) for a in acceptors]).max(axis=0)
            out += 2.0 * np.clip((cos - math.cos(math.radians(30))) / (1 - math.cos(math.radians(30))), 0, 1)
        return out + on_density(u)

    total = score(u1) + score(u2)
    k, m = np.unravel_index(int(np.argmax(total)), total.shape)
    return [pivot + d * u1[k, m], pivot + d * u2[k, m]]


def _sphere_density(pivot: np.ndarray, d: float, uc, density: Callable | None) -> Callable[[np.ndarray], np.ndarray]:
    """Difference density (sigma, clipped to -4..8) on the sphere of radius d around pivot, tabulated
    on a 3-degree grid of polar angles, as a function of unit vectors."""
    if density is None:
        return lambda u: np.zeros(u.shape[:-1])
    step = math.radians(3.0)
    theta = np.arange(0, math.pi + step / 2, step)
    phi = np.arange(0, 2 * math.pi, step)
    table = np.array([[density(tuple(uc.fractionalize(tuple(pivot + d * np.array(
        [math.sin(t) * math.cos(p), math.sin(t) * math.sin(p), math.cos(t)]))))) for p in phi] for t in theta])
    table = np.clip(table, -4.0, 8.0)

    def lookup(u: np.ndarray) -> np.ndarray:
        t = np.rint(np.arccos(np.clip(u[..., 2], -1, 1)) / step).astype(int)
        p = np.rint((np.arctan2(u[..., 1], u[..., 0]) % (2 * math.pi)) / step).astype(int) % len(phi)
        return table[t, p]
    return lookup


# Most bonds (heavy atoms + H) an atom may have; an element not listed carries no riding H.
MAX_VALENCE = {"C": 4, "N": 4, "O": 3, "S": 3, "B": 4, "Si": 4, "P": 4}


def checked_counts(xs: xray.structure, counts: list[int]) -> tuple[list[int], list[str]]:
    """Predicted H counts checked against valence: a count that the atom's heavy-atom bonds leave
    no room for is replaced by the geometry rules' count, and each such conflict is reported."""
    uc = xs.unit_cell()
    elements = [sc.scattering_type for sc in xs.scatterers()]
    bond_table = bonds(xs, elements)
    sites = xs.sites_frac()
    out, conflicts = [], []
    for i, (el, n) in enumerate(zip(elements, counts)):
        nbrs = [c for c in bond_table[i] if elements[c.j] not in ("H", "D")]
        room = max(MAX_VALENCE.get(el, 0) - len(nbrs), 0)
        # riding H are placed relative to the pivot's bonds; without one only a water's pair can be
        placeable = bool(nbrs) or n == 0 or (el == "O" and n == 2)
        if n <= room and placeable:
            out.append(n)
            continue
        pivot = np.array(uc.orthogonalize(sites[i]))
        geometric = N_H.get(afix_for(el, pivot, [(elements[c.j], np.array(uc.orthogonalize(c.site)))
                                                 for c in nbrs]), 0)
        problem = "exceed its valence" if n > room else "have no heavy-atom bond to ride on"
        conflicts.append(f"atom {i + 1} ({el}, {len(nbrs)} bonds): {n} H predicted {problem}; "
                         f"the geometry rules' {geometric} used")
        out.append(geometric)
    return out, conflicts
