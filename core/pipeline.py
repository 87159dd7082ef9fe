"""The classical solve pipeline: data -> phases -> peaks -> typed atoms -> refined model with riding H.

Each stage sits behind a small interface (core/stages.py) so that a network can replace it:
`SolveOptions.phaser` and `SolveOptions.typer` take any object of the right shape.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
from cctbx import crystal, miller, xray
from cctbx.array_family import flex
from smtbx.refinement.constraints import InvalidConstraint
from smtbx.refinement.constraints import adp as adp_constraints
from smtbx.refinement.constraints.geometrical import all as geometrical

from aisolve.core.contents import contents_in_use
from aisolve.core.data_prep import PreparedData, prepare
from aisolve.core.displacement_swaps import exchange_by_displacement, exchanged, follow_exchange
from aisolve.core.dual_space import DualSpacePhaser
from aisolve.core.elements import ATOMIC_NUMBER
from aisolve.core.errors import InputError
from aisolve.core.geometry import bonds, structure_from_sites
from aisolve.core.hydrogens import AS_PLACED, HydrogenGroup, checked_counts, place_hydrogens
from aisolve.core.model import Atom, ReflectionData, Structure, u_star_to_u_cif
from aisolve.core.peaks import difference_coefficients, fourier_peaks, model_phased, sigma_scaled_map
from aisolve.core.phasing import ChargeFlippingPhaser, run_phaser
from aisolve.core.reflection_stats import absence_classes, ABSENCE_I_SIGMA_LIMIT
from aisolve.core.refine import (Figures, RefinementDiverged, RefinementResult, optimise_weights, refine,
                                 set_refinement_flags)
from aisolve.core.stages import (NO_ATOM, NOT_AN_ATOM, AtomTyper, HydrogenCounter, Phaser, PhasingResult, Progress,
                                 TypingContext, confidence_given_atom, no_progress)
from aisolve.core.typing_baseline import BaselineTyper, asu_weights, expected_fraction_per_asu, expected_site_count
from aisolve.core.wyckoff_search import MAX_SITES, integer_counts, refined_candidates, site_probabilities

UNSOLVED_R1 = 0.25  # above this after refinement the structure is reported as not solved
VOLUME_PER_NON_H = 18.0  # A^3, for the atom count when the formula is unknown

_RIDING_CLASS = {
    13: geometrical.tertiary_xh_site, 23: geometrical.secondary_xh2_sites,
    43: geometrical.secondary_planar_xh_site, 93: geometrical.terminal_planar_xh2_sites,
    137: geometrical.terminal_tetrahedral_xh3_sites, 147: geometrical.terminal_tetrahedral_xh_site,
    163: geometrical.terminal_linear_ch_site,
}


@dataclass
class SolveOptions:
    phaser: Phaser | None = None  # default: charge flipping
    typer: AtomTyper | None = None  # default: baseline (electron counts + contents + chemistry)
    hydrogens: str = "geometry"  # 'none': no H; else riding H (counts from h_counter or the geometry rules)
    use_formula: bool = True
    d_min: float | None = None
    phasing_time: float = 60.0
    difference_cycles: int = 3
    refine_cycles: int = 10  # least-squares cycles of the final (anisotropic) refinement
    element_swaps: bool = True  # C/N/O swap test with riding H (with cell contents)
    h_counter: HydrogenCounter | None = None  # H counts per atom (a network); None: the geometry rules
    seed: int = 0
    wyckoff_search: bool = True  # a few atoms, whole counts per cell, no good model: try Wyckoff positions


@dataclass
class SolveResult:
    solved: bool
    structure: Structure
    figures: Figures | None
    data: PreparedData | None
    f_calc: miller.array | None  # final model's structure factors (for .fcf and maps)
    phasing: PhasingResult | None
    stages: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    formula_used: bool = True


class _Timer:
    def __init__(self, prefix: str = ""):
        self.stages: list[dict] = []
        self.prefix = prefix  # names a second attempt's stages apart

    def run(self, name: str, fn, *args, **kwargs):
        t = time.monotonic()
        out = fn(*args, **kwargs)
        self.stages.append({"stage": self.prefix + name, "seconds": round(time.monotonic() - t, 3)})
        return out


def check_inputs(structure: Structure, refl: ReflectionData) -> list[str]:
    """Refuse data that cannot belong to the cell; warn about violated absences."""
    sym = structure.symmetry
    d = sym.unit_cell().d(flex.miller_index([tuple(map(int, h)) for h in refl.indices]))
    d_min = flex.min(d)
    wavelength = structure.wavelength or 0.71073
    if d_min < wavelength / 2 * 0.98:
        raise InputError(refl.source, f"the cell does not fit the data: with this cell the highest index "
                                      f"reaches d = {d_min:.3f} A, beyond the limit lambda/2 = {wavelength / 2:.3f} A "
                                      f"(wrong cell, or indices from another crystal)")
    warnings = []
    bad = [a for a in absence_classes(refl, sym) if a.mean_i_over_sigma > ABSENCE_I_SIGMA_LIMIT]
    if bad:
        warnings.append("systematic absences violated for " + ", ".join(
            f"{a.zone} ({a.count} refl., <I/sigma> {a.mean_i_over_sigma:.1f})" for a in bad)
            + f": is {sym.space_group_info()} right?")
    return warnings


def expected_atom_count(structure: Structure, contents: dict[str, float]) -> int:
    """Non-H atoms in the asymmetric unit: from the contents in use, else from the cell volume."""
    order_z = structure.space_group.order_z()
    if expected_fraction_per_asu(contents, order_z):
        return expected_site_count(contents, order_z)
    return max(1, int(round(structure.unit_cell.volume() / (VOLUME_PER_NON_H * order_z))))


def contents_count(contents: dict[str, float], sym: crystal.symmetry) -> float:
    """Non-H atoms per asymmetric unit that the contents give, atoms on special positions as the
    fractions they are (urea's asymmetric unit holds one atom: a quarter C, a quarter O, half an N)."""
    return sum(expected_fraction_per_asu(contents, sym.space_group().order_z()).values())


def _fractional_count(n_sites: float, contents: dict[str, float], sym: crystal.symmetry) -> float:
    """`n_sites` (a count in whole sites, expected_site_count) scaled to what atoms on special positions
    make of it: dual space puts n x order_z atoms in P1, and simulated Li2CO3 (3 atoms per
    asymmetric unit, 4 counted whole) was phased only with the 24 P1 atoms it has, not 32."""
    whole = expected_site_count(contents, sym.space_group().order_z())
    return n_sites * contents_count(contents, sym) / whole if whole else n_sites


def _electron_estimates(xs: xray.structure, fo_sq: miller.array) -> list[float]:
    """Electrons per atom from refined occupancies (occupancy x Z of the current element).

    With free Uiso the estimate is precise when the current element is nearly right, but occupancy
    and Uiso trade off when it is far off (a metal typed S stays 'S' with a tiny U). With one
    common Uiso the estimate is coarser but cannot hide a large error. The free estimate is used
    unless the two disagree by more than a few electrons.
    """
    free = _occupancy_estimates(xs, fo_sq, fixed_u=None)
    u_common = float(np.median([sc.u_iso_or_equiv(xs.unit_cell()) for sc in xs.scatterers()]))
    fixed = _occupancy_estimates(xs, fo_sq, fixed_u=u_common)
    return [f if abs(f - g) <= max(3.0, 0.25 * f) else g for f, g in zip(free, fixed)]


def _occupancy_estimates(xs: xray.structure, fo_sq: miller.array, fixed_u: float | None) -> list[float]:
    trial = xs.deep_copy_scatterers()
    for sc in trial.scatterers():
        sc.occupancy = 1.0
        if fixed_u is not None:
            sc.u_iso = fixed_u
    set_refinement_flags(trial, aniso=False, refine_occupancy=True,
                         fixed_u_iso=set(range(trial.scatterers().size())) if fixed_u is not None else None)
    refine(trial, fo_sq, cycles=6)
    return [sc.occupancy * ATOMIC_NUMBER[sc.scattering_type] for sc in trial.scatterers()]


def _starting_u(data: PreparedData) -> float:
    """Uiso for new atoms: the Wilson B, kept within sane bounds."""
    return min(max(data.wilson_b / (8 * math.pi ** 2), 0.01), 0.08)


def _initial_model(f_calc: miller.array, sym: crystal.symmetry, n_expected: int,
                   u0: float) -> xray.structure | None:
    """Peaks of a phased map as carbon atoms: the expected number, cut where the heights collapse.
    Peaks on special positions count as the fraction of an atom they stand for, so a zeolite's
    framework (most atoms on mirrors and axes) gets all its sites."""
    peaks = fourier_peaks(f_calc, max_peaks=int(3 * n_expected) + 5)
    if not peaks:
        return None
    top = [p.height for p in peaks[:n_expected]]
    cut = 0.3 * float(np.median(top))
    strong = [p for p in peaks if p.height >= cut]
    weights = asu_weights(sym, [p.xyz for p in strong])
    chosen, total = [], 0.0
    for p, w in zip(strong, weights):
        if total >= 1.15 * n_expected - 1e-6:
            break
        chosen.append(p)
        total += w
    return structure_from_sites(sym, [p.xyz for p in chosen], ["C"] * len(chosen), u0)


def _rank_types(xs: xray.structure, contents: dict[str, float], sym: crystal.symmetry) -> None:
    """Quick typing by peak order: heaviest expected elements on the first (highest) peaks, each
    peak using up its share of the asymmetric unit (half an atom on a mirror). Whole atoms per
    peak gave simulated 04369a (two W on mirrors, one W per asymmetric unit) a single W and an
    S on the other W site: its right charge-flipping map then scored R1 0.49, and the later
    phasing rounds ended on a wrong map (R1 0.30 at the end); now 0.19, and solved."""
    remaining = expected_fraction_per_asu(contents, sym.space_group().order_z())
    order = sorted(remaining, key=lambda e: -ATOMIC_NUMBER[e])
    weights = asu_weights(sym, [sc.site for sc in xs.scatterers()])
    used: set[str] = set()
    for sc, weight in zip(xs.scatterers(), weights):
        # an element is free while half this site is left of it (a W counted 1/2 per asymmetric
        # unit also takes a peak the search put off its mirror), and for its first site whatever
        # its count (an atom on a site of high symmetry counts 1/8, its peak perhaps less)
        element = next((el for el in order if el not in used or remaining[el] >= 0.5 * weight - 1e-9),
                       order[-1] if order else "C")
        sc.scattering_type = element
        if element in remaining:
            remaining[element] -= weight
            used.add(element)
    xs.discard_scattering_type_registry()


HEAVY_START_Z = 10  # expected elements beyond Ne start typing on the highest peaks


def _heavy_start(xs: xray.structure, contents: dict[str, float], sym: crystal.symmetry) -> xray.structure:
    """The peaks as carbon, except that the highest take the expected elements heavier than Ne.

    Typing estimates each site's electrons by refining occupancies for a few cycles from its
    current element. From carbon, an iodine site (occupancy 9) gets nowhere near and its ghost
    peaks are drawn up with it (simulated o-iodotoluene: typed with two I, R1 0.40 instead of
    0.045); C, N and O start as carbon as before, since their peaks' order says little."""
    typed = xs.deep_copy_scatterers()
    _rank_types(typed, contents, sym)
    for sc in typed.scatterers():
        if ATOMIC_NUMBER[sc.scattering_type] <= HEAVY_START_Z:
            sc.scattering_type = "C"
    typed.discard_scattering_type_registry()
    return typed


MAX_CANDIDATES = 8  # maps a phaser hands on that get a quick model and refinement (dual space: 8)


def _best_candidate(phasing: PhasingResult, data: PreparedData, sym: crystal.symmetry,
                    contents: dict[str, float], n_expected: int, u0: float):
    """Truth-free choice among phasing candidates: R1 after a quick model build and refinement."""
    best, best_map, best_r1, tried = None, None, math.inf, 0
    for fom, f_calc in phasing.candidates[:MAX_CANDIDATES] or [(phasing.figure_of_merit, phasing.f_calc)]:
        xs = _initial_model(f_calc, sym, n_expected, u0)
        if xs is None:
            continue
        tried += 1
        quick = xs.deep_copy_scatterers()
        _rank_types(quick, contents, sym)
        set_refinement_flags(quick, aniso=False)
        r1 = refine(quick, data.fo_sq, cycles=4).figures.r1
        if r1 < best_r1:
            best, best_map, best_r1, best_fom = _heavy_start(xs, contents, sym), f_calc, r1, fom
    if best is None:
        return None, None, math.inf, "no candidate map had peaks"
    figure = "CC(E^2)" if phasing.route == DualSpacePhaser.name else "skewness"
    figure = f"{figure} {best_fom:.2f}, " if best_fom is not None else ""  # a phaser need not give one
    return best, best_map, best_r1, (f"{tried} candidate maps compared; chosen: {figure}"
                                     f"quick-refinement R1 {best_r1:.3f}")


QUICK_R1_RETRY = 0.20  # a chosen candidate worse than this: more phasing rounds
# Dual space's share of the phasing time, at most. The synthetic benchmark (20 s of phasing in
# all) found its dual-space solutions within it; on real entries whose quick refinement stays
# poor for other reasons (ZZULI2, olex2-gui__183, urea) dual space otherwise ran out a 60 s budget for
# the same final model.
DUAL_SPACE_MAX_SECONDS = 20.0


def _phase_and_choose(data: PreparedData, sym: crystal.symmetry, contents: dict[str, float], n_expected: int,
                      options: SolveOptions, timer: _Timer, progress: Progress):
    """Phasing and the truth-free candidate choice; with the default charge flipping (or a phaser
    that falls back to it), more rounds follow while the best candidate's quick-refinement R1
    stays poor and time is left: two rounds of charge flipping with fresh random starts, then
    dual space. Charge flipping's trajectory hangs on tiny differences (the same data in float32
    or float64 can phase right or wrong), so a poor choice is often bad luck; but some packings
    (flat molecules in layers) stall it on every start, and dual space's atomicity gets through."""
    start = time.monotonic()
    phaser = options.phaser or ChargeFlippingPhaser(seed=options.seed)
    fallback = options.phaser is None or getattr(options.phaser, "falls_back_to_flipping", False)
    u0 = _starting_u(data)
    phasing, phaser = timer.run("phasing", run_phaser, phaser, data, sym, options.phasing_time, options.seed,
                                lambda f, m: progress(0.05 + 0.35 * f, m))
    # the rounds after the first phasing: charge flipping with fresh seeds (half the time left
    # each; a round of flipping mostly ends in a second or two), then dual space. With dual space
    # in place of the second flipping round, two simulated molecules that this round solves were
    # lost (P-1, P2_1/c: dual space found high-CC false solutions in P1; docs/BENCHMARKS.md)
    rounds = [(ChargeFlippingPhaser(seed=options.seed + 2000), "charge flipping", 0.5),
              (ChargeFlippingPhaser(seed=options.seed + 3000), "charge flipping", 0.5),
              (DualSpacePhaser(_fractional_count(n_expected, contents, sym), seed=options.seed),
               "dual-space phasing", 1.0)]
    if not isinstance(phaser, ChargeFlippingPhaser):
        rounds.insert(0, (ChargeFlippingPhaser(seed=options.seed), "charge flipping", 0.5))
    xs, chosen_map, quick_r1, choice = None, None, math.inf, "no candidate"
    if phasing.solved:
        progress(0.42, "peak search")
        xs, chosen_map, quick_r1, choice = timer.run("candidate_choice", _best_candidate, phasing, data, sym,
                                                     contents, n_expected, u0)
    elif not fallback:
        return phasing, None, None
    for round_, (round_phaser, what, share) in enumerate(rounds, start=2):
        left = options.phasing_time - (time.monotonic() - start)
        if not fallback or quick_r1 <= QUICK_R1_RETRY or left < 5.0:
            break
        progress(0.42, f"{what}, round {round_}" + (f" (best quick-refinement R1 {quick_r1:.3f})"
                                                    if xs is not None else ""))
        budget = share * left
        if isinstance(round_phaser, DualSpacePhaser):
            budget = min(budget, DUAL_SPACE_MAX_SECONDS)
        more = timer.run(f"phasing_{round_}", round_phaser.phase, data, sym, budget)
        note = (f"round {round_}: {what}" + (f"; the best candidate so far had quick-refinement R1 "
                                             f"{quick_r1:.3f}" if xs is not None else ""))
        if more.solved:
            xs2, map2, r1_2, choice2 = timer.run(f"candidate_choice_{round_}", _best_candidate, more, data, sym,
                                                 contents, n_expected, u0)
            if r1_2 < quick_r1:
                more.notes = phasing.notes + ([choice] if xs is not None else []) + [note] + more.notes
                more.trials = phasing.trials + more.trials
                phasing, xs, chosen_map, quick_r1, choice = more, xs2, map2, r1_2, choice2
                continue
        phasing.notes.append(note + " (no better candidate)")
    if xs is not None:
        phasing.notes.append(choice)
    return phasing, xs, chosen_map


def _type_atoms(xs: xray.structure, data: PreparedData, contents: dict[str, float], typer: AtomTyper,
                sym: crystal.symmetry, map_coefficients: miller.array | None = None, z: float | None = None,
                candidate_elements: tuple[str, ...] = ()) -> tuple[xray.structure, list[Atom]]:
    """Types the atoms of xs; atoms the typer calls no atom (NOT_AN_ATOM) are removed."""
    estimates = _electron_estimates(xs, data.fo_sq)
    if map_coefficients is None and getattr(typer, "needs_map", False):
        # the observed amplitudes with the model's phases
        f_model = data.f_obs.structure_factors_from_scatterers(xs, algorithm="direct").f_calc()
        map_coefficients = model_phased(data.f_obs, f_model)
    atoms = [Atom(label=sc.label, element=sc.scattering_type, xyz=tuple(sc.site), uiso=sc.u_iso)
             for sc in xs.scatterers()]
    context = TypingContext(symmetry=sym, contents=contents, data=data, electron_estimates=estimates,
                            map_coefficients=map_coefficients, z=z, candidate_elements=candidate_elements)
    atoms = typer.assign(atoms, context)
    keep = [i for i, a in enumerate(atoms) if a.element != NOT_AN_ATOM]
    if not keep:  # nothing the typer believes in: keep the peaks as carbon and let refinement judge
        for a in atoms:
            a.element = "C"
    elif len(keep) < len(atoms):
        xs = xs.select(flex.size_t(keep))
        atoms = [atoms[i] for i in keep]
    _apply_types(xs, atoms)
    return xs, atoms


def _apply_types(xs: xray.structure, atoms: list[Atom]) -> None:
    for sc, a in zip(xs.scatterers(), atoms):
        sc.scattering_type = a.element
    xs.discard_scattering_type_registry()


def _site_belief(atom: Atom) -> float:
    """How sure the typer is that an atom of this element is here: its element confidence (given
    an atom) times the probability that the site holds an atom at all."""
    probs = atom.element_probabilities or {}
    return (atom.confidence or 0.0) * (1.0 - probs.get(NO_ATOM, 0.0))


def _prune(xs: xray.structure, atoms: list[Atom], u_max: float = 0.15) -> tuple[xray.structure, list[Atom]]:
    """Drop atoms that refinement says are not there: huge Uiso, or crowding a better atom."""
    keep = []
    elements = [sc.scattering_type for sc in xs.scatterers()]
    table = bonds(xs, elements)
    for i, sc in enumerate(xs.scatterers()):
        u = sc.u_iso_or_equiv(xs.unit_cell())
        too_close = any(c.distance < 0.9 and _site_belief(atoms[c.j]) >= _site_belief(atoms[i])
                        and c.j < i for c in table[i])
        if u <= u_max and not too_close:
            keep.append(i)
    sel = flex.size_t(keep)
    return xs.select(sel), [atoms[i] for i in keep]


def _difference_coefficients(xs: xray.structure, data: PreparedData, scale: float) -> miller.array:
    f_calc = data.fo_sq.structure_factors_from_scatterers(xs, algorithm="direct").f_calc()
    return difference_coefficients(data.fo_sq, f_calc, scale)


def _add_from_difference_map(xs: xray.structure, result: RefinementResult, data: PreparedData,
                             n_missing: int, min_height: float = 4.0) -> int:
    """Add difference-map peaks at bonding distance from the model (as C); returns how many."""
    if n_missing <= 0:
        return 0
    coeffs = _difference_coefficients(xs, data, result.figures.scale)
    peaks = fourier_peaks(coeffs, max_peaks=max(20, 3 * n_missing), min_height=min_height)
    added = 0
    for p in peaks:
        if added >= n_missing:
            break
        nearest = _nearest_distance(xs, p.xyz)
        if nearest is None or nearest < 1.05 or nearest > 1.95:
            continue
        xs.add_scatterer(xray.scatterer(label=f"X{xs.scatterers().size() + 1}", site=p.xyz, u=0.03,
                                        scattering_type="C"))
        added += 1
    return added


DOUBTFUL_NO_ATOM_P = 0.5  # a light atom the typer calls no atom at least this likely is doubtful
DOUBTFUL_MAX_Z = 10
DOUBTFUL_GAIN = 0.95  # the refilled model must refine to this fraction of the current R1 or better
DOUBTFUL_ROUNDS = 3  # a refilled model's typing can doubt other sites


def _replace_doubtful_sites(xs: xray.structure, atoms: list[Atom], data: PreparedData, contents: dict[str, float],
                            typer: AtomTyper, sym: crystal.symmetry, z: float | None,
                            candidates: tuple[str, ...], n_expected: int, notes: list[str],
                            r1_now: float | None = None):
    """A second look at light atoms the typer doubts: removed, the model refined without them and
    refilled from its difference maps; kept only if that refines better.

    Returns the model, its atoms, whether it changed, and its isotropic R1 (`r1_now`, xs's when
    known, or None when nothing was tried), which the next look and the cut-back need not redo.

    The cell contents' counts make the typer give every site an element, so a ghost peak (a
    ripple of a Br) can hold the place of a missing light atom; the difference map adds nothing
    while the count is full. Without the ghosts the missing atoms show."""
    doubtful = [i for i, a in enumerate(atoms)
                if (a.element_probabilities or {}).get(NO_ATOM, 0.0) >= DOUBTFUL_NO_ATOM_P
                and ATOMIC_NUMBER.get(a.element, 0) <= DOUBTFUL_MAX_Z]
    if not doubtful or len(doubtful) == len(atoms):
        return xs, atoms, False, r1_now
    r1_now = _iso_r1(xs, data) if r1_now is None else r1_now
    keep = flex.size_t(sorted(set(range(len(atoms))) - set(doubtful)))
    trial, trial_atoms = xs.select(keep), [atoms[i] for i in keep]
    for _ in range(2):
        set_refinement_flags(trial, aniso=False)
        result = refine(trial, data.fo_sq, 8)
        trial, trial_atoms, added = _complete_and_retype(trial, trial_atoms, result, data, contents, typer, sym, z,
                                                         candidates, n_expected, _Timer(), "")
        if added == 0:
            break
    r1_trial = _iso_r1(trial, data)
    verdict = "kept" if r1_trial < DOUBTFUL_GAIN * r1_now else "not kept"
    notes.append(f"{len(doubtful)} doubtful light atoms removed and the model refilled from difference maps: "
                 f"R1 {r1_now:.3f} -> {r1_trial:.3f} ({verdict})")
    return (trial, trial_atoms, True, r1_trial) if verdict == "kept" else (xs, atoms, False, r1_now)


TRIM_TOLERANCE = 1.05  # a model cut back to the contents' count may refine this much worse and still be kept
TRIM_SLACK = 0.01  # sites (asymmetric-unit weight) past the contents' count that are rounding


def _more_sites_than_contents(site_weight: float, contents: dict[str, float], sym: crystal.symmetry) -> bool:
    """Whether sites of this asymmetric-unit weight are more than the contents give atoms: the rule
    the cut-back cuts by and the 'solved only with more sites' warning reports by."""
    return site_weight > contents_count(contents, sym) + TRIM_SLACK


def _trim_to_count(xs: xray.structure, atoms: list[Atom], data: PreparedData, contents: dict[str, float],
                   typer: AtomTyper, sym: crystal.symmetry, z: float | None, candidates: tuple[str, ...],
                   cycles: int, notes: list[str], r1_now: float | None = None):
    """A model with more sites than the contents give atoms, cut back to the atoms the typer
    believes in most, completed at that count and kept if it refines about as well (`r1_now`: xs's
    isotropic R1 when already known).

    The retry with more sites is there for disorder, where the extra sites carry density; but a
    retry also phases afresh, and when that alone rescues a structure the extra sites are noise
    (simulated brucine: 44 sites for 29 atoms, the 15 extra called 'no atom' at p > 0.85; R1
    0.097 with them, 0.098 without). A first model keeps sites past the count too, when they
    refine to a modest Uiso (_prune spares them)."""
    n_atoms = contents_count(contents, sym)
    if not _more_sites_than_contents(_site_weight(xs), contents, sym):
        return xs, atoms, False
    weights = asu_weights(sym, [a.xyz for a in atoms])
    keep, total = [], 0.0
    for i in sorted(range(len(atoms)), key=lambda k: -_site_belief(atoms[k])):
        if total + weights[i] <= n_atoms + TRIM_SLACK:
            keep.append(i)
            total += weights[i]
    keep.sort()
    trial, trial_atoms = _difference_cycles(xs.select(flex.size_t(keep)), [atoms[i] for i in keep], data, contents,
                                            typer, sym, z, candidates, max(1, round(n_atoms)), cycles, _Timer(),
                                            no_progress, notes)
    r1_now = _iso_r1(xs, data) if r1_now is None else r1_now
    r1_trial = _iso_r1(trial, data)
    kept = r1_trial <= TRIM_TOLERANCE * r1_now
    notes.append(f"the model of {len(atoms)} sites cut back to the {n_atoms:g} atoms expected: R1 {r1_now:.3f} -> "
                 f"{r1_trial:.3f} ({'kept' if kept else 'not kept'})")
    return (trial, trial_atoms, True) if kept else (xs, atoms, False)


def _complete_and_retype(xs: xray.structure, atoms: list[Atom], result: RefinementResult, data: PreparedData,
                         contents: dict[str, float], typer: AtomTyper, sym: crystal.symmetry, z: float | None,
                         candidates: tuple[str, ...], n_expected: int, timer: _Timer, tag: str):
    """One completion step after a refinement (`result`): prune, add difference-map peaks up to
    `n_expected` sites, retype. Returns the model, its atoms and how many sites were added."""
    xs, atoms = _prune(xs, atoms)
    added = timer.run(f"difference_map{tag}", _add_from_difference_map, xs, result, data,
                      n_expected - round(_site_weight(xs)))
    xs, atoms = timer.run(f"retype{tag}", _type_atoms, xs, data, contents, typer, sym, None, z, candidates)
    return xs, atoms, added


def _iso_r1(xs: xray.structure, data: PreparedData, cycles: int = 8) -> float:
    """R1 of a copy of xs after isotropic refinement (xs itself is left as it is)."""
    copy_ = xs.deep_copy_scatterers()
    set_refinement_flags(copy_, aniso=False)
    return refine(copy_, data.fo_sq, cycles).figures.r1


def _nearest_distance(xs: xray.structure, site, cutoff: float = 2.5) -> float | None:
    """Shortest distance from `site` to a model atom or to its own symmetry copies, within cutoff."""
    found = xs.closest_distances(sites_frac=flex.vec3_double([tuple(site)]), distance_cutoff=cutoff)
    dists = [found.smallest_distances[0]] if found.i_seqs[0] >= 0 else []
    uc = xs.unit_cell()
    dists += [d for d in (uc.mod_short_distance(site, op * tuple(site)) for op in xs.space_group().all_ops()[1:])
              if 0.1 < d < cutoff]
    return min(dists) if dists else None


def _add_riding_hydrogens(xs: xray.structure, groups: list[HydrogenGroup]) -> list:
    """Append the H atoms of `groups` to `xs`; return their smtbx riding constraints."""
    first_h = _first_h_indices(groups, xs.scatterers().size())
    for g in groups:
        u_pivot = xs.scatterers()[g.pivot].u_iso_or_equiv(xs.unit_cell())
        for site, occupancy in zip(g.sites_frac, g.occupancies or [1.0] * len(g.sites_frac)):
            xs.add_scatterer(xray.scatterer(label="H", site=site, u=g.u_factor * u_pivot, occupancy=occupancy,
                                            scattering_type="H"))
    return _riding_constraints(groups, first_h)


def _hydrogen_groups(heavy_xs, result, data, structure, timer, progress, counter: HydrogenCounter | None = None,
                     contents: dict[str, float] | None = None, warnings: list[str] | None = None
                     ) -> list[HydrogenGroup]:
    """Riding H groups: counts from `counter` (checked against valence) or the geometry rules."""
    progress(0.85, "riding hydrogens")
    density = difference_density(heavy_xs, data, result.figures.scale)
    counts = None
    if counter is not None:
        predicted = timer.run("hydrogen_counts", counter.counts, heavy_xs, contents, density, structure.temperature)
        counts, conflicts = checked_counts(heavy_xs, predicted)
        if warnings is not None:
            warnings.extend(f"hydrogens: {c}" for c in conflicts)
    return timer.run("hydrogens", place_hydrogens, heavy_xs, structure.temperature, density, counts)


DIVERGED = ("anisotropic refinement diverged ({}): the model is refined isotropically; a wrong atom or "
            "poor data can make an ADP run away")


def _refine_heavy(xs, data, cycles: int, aniso: bool, timer, warnings: list[str]):
    """The heavy atoms refined (anisotropic when asked); an anisotropic refinement that diverges is
    redone isotropically from where it started, with a warning."""
    start = xs.deep_copy_scatterers()
    set_refinement_flags(xs, aniso=aniso)
    try:
        return xs, timer.run("refine_heavy", refine, xs, data.fo_sq, cycles), aniso
    except RefinementDiverged as exc:
        if not aniso:
            raise
        warnings.append(DIVERGED.format(exc))
        set_refinement_flags(start, aniso=False)
        return start, timer.run("refine_heavy", refine, start, data.fo_sq, cycles), False


def _refine_with_hydrogens(heavy_xs, groups, data, aniso, timer, warnings, cycles: int = 10):
    """Heavy atoms plus riding H, refined. smtbx judges connectivity by its own bond table (metal
    contacts count there) and cannot ride on some symmetry copies: groups it refuses ride as
    placed (AFIX 3) instead, and are reported."""
    while True:
        xs = heavy_xs.deep_copy_scatterers()
        constraints = _add_riding_hydrogens(xs, groups)
        set_refinement_flags(xs, aniso=aniso)
        ride = _fix_placed_sites(xs, groups, heavy_xs.scatterers().size())
        try:
            result = timer.run("refine_final", refine, xs, data.fo_sq, cycles, constraints)
            ride()
            return xs, result, groups, constraints
        except RefinementDiverged as exc:
            if not aniso:
                raise
            warnings.append(DIVERGED.format(exc))
            aniso = False
        except (InvalidConstraint, TypeError) as exc:
            pivot = _pivot_in_message(str(exc), xs, groups)
            refused = [pivot] if pivot is not None else _refused_pivots(heavy_xs, groups, data)
            refused = [p for p in refused if any(g.pivot == p and g.afix != AS_PLACED for g in groups)]
            if not refused:
                raise
            warnings.append(f"riding H on atom(s) {', '.join(str(p + 1) for p in refused)} ride as placed "
                            f"(AFIX 3): smtbx refused the group ({str(exc).splitlines()[0][:80]})")
            groups = [replace(g, afix=AS_PLACED) if g.pivot in refused else g for g in groups]


SWAP_MAX_R1 = 0.15  # only a model this good has H density worth judging
SWAP_ELEMENTS = ("C", "N", "O")  # one electron apart: the pairs electron counts confuse
SWAP_CANDIDATES = 4  # lowest-confidence atoms of each element tried when all pairs would be too many
# Up to this many C/N and N/O pairs every pair is tried: the network can be sure of a wrong pair
# (ZZULI2: a C/N swap at p = 0.9997 each before tempering, which the 4 least confident of each
# element missed)
MAX_SWAP_PAIRS = 40
SWAP_GAIN = 0.02  # relative wR2 drop a swap must bring to be kept
# resolution of the data the swaps are judged with (A): H scatter at low angles, but with data to
# 1.0 A no pair of simulated Cn1ncc2c(S)ncnc21 scored better after the first swap, and its last
# C/N mix-up stayed (docs/BENCHMARKS.md)
SWAP_D_MIN = 0.8
SWAP_CYCLES = (2, 3)  # least-squares cycles before and after the H are placed


def _swap_elements(heavy_xs, atoms: list[Atom], data: PreparedData, structure: Structure, aniso: bool,
                   notes: list[str]):
    """Pairwise C/N and N/O swaps among the least certain atoms, judged with their riding H.

    The electron count of a site cannot tell a ring N from a C-H carbon: the H's density makes
    up the missing electron. A model that carries the H each assignment implies can: for every
    candidate swap, the H are placed for the swapped elements and the model is refined briefly;
    the swap with the lowest wR2 is kept if it beats the current model by SWAP_GAIN, and the
    search repeats. The cell contents' counts are unchanged by a swap.
    """
    # H scatter at low angles: the data to SWAP_D_MIN carry the signal at a fraction of the cost
    low = replace(data, fo_sq=data.fo_sq.resolution_filter(d_min=SWAP_D_MIN))

    def wr2(xs) -> float:
        quick = xs.deep_copy_scatterers()
        result = refine(quick, low.fo_sq, SWAP_CYCLES[0])
        density = difference_density(quick, data, result.figures.scale)
        groups = place_hydrogens(quick, structure.temperature, density)
        return _refine_with_hydrogens(quick, groups, low, aniso, _Timer(), [], cycles=SWAP_CYCLES[1])[1].figures.wr2

    current = wr2(heavy_xs)
    for _round in range(2):
        by_element: dict[str, list[int]] = {}
        for i in sorted(range(len(atoms)), key=lambda k: atoms[k].confidence if atoms[k].confidence is not None
                        else 1.0):
            if atoms[i].element in SWAP_ELEMENTS:
                by_element.setdefault(atoms[i].element, []).append(i)
        pairs = _swap_pairs(by_element, None)
        if len(pairs) > MAX_SWAP_PAIRS:
            pairs = _swap_pairs(by_element, SWAP_CANDIDATES)
        if not pairs:
            break
        scored = [(wr2(exchanged(heavy_xs, i, j)), i, j) for i, j in pairs]
        best, i, j = min(scored)
        if best > (1 - SWAP_GAIN) * current:
            break
        heavy_xs = exchanged(heavy_xs, i, j)
        follow_exchange(atoms, heavy_xs, i, j)
        notes.append(f"element swap of atoms {i + 1} and {j + 1} ({atoms[j].element}/{atoms[i].element} -> "
                     f"{atoms[i].element}/{atoms[j].element}): wR2 with riding H {current:.4f} -> {best:.4f}")
        current = best
    return heavy_xs


def _swap_pairs(by_element: dict[str, list[int]], per_element: int | None) -> list[tuple[int, int]]:
    """C/N and N/O pairs (C/O differ by two electrons) among the first `per_element` atoms of each
    element (all when None)."""
    return [(i, j) for e1 in by_element for e2 in by_element if ATOMIC_NUMBER[e2] - ATOMIC_NUMBER[e1] == 1
            for i in by_element[e1][:per_element] for j in by_element[e2][:per_element]]


def _refused_pivots(heavy_xs, groups, data) -> list[int]:
    """Pivots whose group smtbx cannot set up next to the groups accepted before it.

    Groups are added one at a time, since a failure can come from two groups together (a
    neighbour that is a riding H of another group, across a symmetry operation).
    """
    from smtbx import refinement
    from smtbx.refinement import least_squares
    accepted, bad = [], []
    for g in groups:
        xs = heavy_xs.deep_copy_scatterers()
        constraints = _add_riding_hydrogens(xs, accepted + [g])
        set_refinement_flags(xs, aniso=False)
        try:
            refinement.model(fo_sq=data.fo_sq.as_xray_observations(), xray_structure=xs,
                             constraints=constraints, restraints_manager=None,
                             weighting_scheme=least_squares.mainstream_shelx_weighting()).least_squares()
            accepted.append(g)
        except (InvalidConstraint, TypeError):
            bad.append(g.pivot)
    return bad


def _first_h_indices(groups: list[HydrogenGroup], n_heavy: int) -> list[int]:
    out, start = [], n_heavy
    for g in groups:
        out.append(start)
        start += len(g.sites_frac)
    return out


def _fix_placed_sites(xs: xray.structure, groups: list[HydrogenGroup], n_heavy: int):
    """H riding as placed (AFIX 3: water, groups smtbx refuses) keep their sites in refinement;
    the returned function moves them with their pivot afterwards, which is what riding means."""
    riders = [(g.pivot, range(start, start + len(g.sites_frac)))
              for g, start in zip(groups, _first_h_indices(groups, n_heavy)) if g.afix == AS_PLACED]
    scatterers = xs.scatterers()
    for _, hs in riders:
        for h in hs:
            scatterers[h].flags.set_grad_site(False)
    before = {p: scatterers[p].site for p, _ in riders}

    def ride() -> None:
        for p, hs in riders:
            shift = [a - b for a, b in zip(scatterers[p].site, before[p])]
            for h in hs:
                scatterers[h].site = tuple(x + s for x, s in zip(scatterers[h].site, shift))
    return ride


def _pivot_in_message(message: str, xs: xray.structure, groups: list[HydrogenGroup]) -> int | None:
    labels = {sc.label: i for i, sc in enumerate(xs.scatterers())}
    for word in message.replace(":", " ").split():
        i = labels.get(word)
        if i is not None and any(g.pivot == i for g in groups):
            return i
    return None


def _riding_constraints(groups: list[HydrogenGroup], first_h: list[int]) -> list:
    out = []
    for g, start in zip(groups, first_h):
        idx = tuple(range(start, start + len(g.sites_frac)))
        if g.afix == AS_PLACED:  # no smtbx constraint rides it: its sites stay put (_fix_placed_sites)
            out += [adp_constraints.u_iso_proportional_to_pivot_u_eq(
                u_eq_scatterer_idx=g.pivot, u_iso_scatterer_idx=h, multiplier=g.u_factor) for h in idx]
            continue
        c = _RIDING_CLASS[g.afix](rotating=g.afix in (137, 147), stretching=False, bond_length=g.distance,
                                  pivot=g.pivot)
        c.constrained_site_indices = idx
        out.append(c)
        for h in idx:
            out.append(adp_constraints.u_iso_proportional_to_pivot_u_eq(
                u_eq_scatterer_idx=g.pivot, u_iso_scatterer_idx=h, multiplier=g.u_factor))
    return out


def difference_density(xs: xray.structure, data: PreparedData, scale: float):
    """site_frac -> the sigma-scaled difference density (Fo - Fc, model phases) of model `xs`."""
    from cctbx import maptbx
    real = sigma_scaled_map(_difference_coefficients(xs, data, scale)).real_map_unpadded()
    return lambda site: maptbx.eight_point_interpolation(real, site)


def solve(structure: Structure, refl: ReflectionData, options: SolveOptions | None = None,
          progress: Progress = no_progress) -> SolveResult:
    options = options or SolveOptions()
    timer = _Timer()
    sym = structure.symmetry
    warnings = check_inputs(structure, refl)
    in_use = contents_in_use(structure, options.use_formula)
    n_expected = expected_atom_count(structure, in_use.contents)
    if in_use.problem:
        warnings.append(f"{in_use.problem} (about {n_expected} non-H atoms expected from the cell volume)")
    elif in_use.minor_note:
        warnings.append(in_use.minor_note)
    elif not in_use.contents:
        warnings.append("no cell contents: elements come from electron counts and chemistry alone "
                        f"(about {n_expected} non-H atoms expected from the cell volume)")
    progress(0.02, "preparing data")
    data = timer.run("data_preparation", prepare, refl, sym, in_use.contents or {"C": 1.0}, options.d_min)
    if data.r_int is not None and data.r_int > 0.35:
        warnings.append(f"the data merge poorly in {sym.space_group_info()} (R_int {data.r_int:.2f}): "
                        "cell or symmetry may be wrong")
    result = _solve_for_count(structure, data, options, in_use, n_expected, timer, progress)
    if options.wyckoff_search and in_use.contents and (result.figures is None or result.figures.r1 > WYCKOFF_TRY_R1
                                                       or len(result.structure.non_h_atoms()) <= MAX_SITES):
        wyckoff_timer = _Timer("wyckoff_")
        wyckoff = _solve_by_wyckoff(structure, data, options, in_use, result, wyckoff_timer, progress)
        timer.stages += wyckoff_timer.stages
        if wyckoff is not None:
            before = f"R1 {result.figures.r1:.3f}" if result.figures is not None else "no model"
            wyckoff.warnings.insert(0, f"solved by a search over Wyckoff positions (R1 {wyckoff.figures.r1:.3f}; "
                                       f"charge flipping and peak picking: {before}); each atom's confidence "
                                       "weighs the other arrangements tried")
            result = wyckoff
    if result.figures is not None and not result.solved:
        # The asymmetric unit can hold more sites than its share of the atoms: disorder over a
        # symmetry element doubles sites (olex2-gui__183: half a molecule on a 2-fold axis, its
        # naphthyl in two orientations), and contents can undercount. A model built from the
        # atom count then stays wrong. One more try with more sites.
        n_more = int(math.ceil(MORE_SITES_FACTOR * n_expected))
        progress(0.05, f"not solved with {n_expected} sites (R1 {result.figures.r1:.3f}): trying {n_more}")
        more = _solve_for_count(structure, data, options, in_use, n_more, _Timer("more_sites_"), progress)
        timer.stages += more.stages
        if more.figures is not None and more.figures.r1 < MORE_SITES_MAX_R1:
            n_sites = sum(asu_weights(sym, [a.xyz for a in more.structure.non_h_atoms()]))
            if (_more_sites_than_contents(n_sites, in_use.contents, sym) if in_use.contents
                    else n_sites > n_expected + 0.5):
                more.warnings.insert(0, f"solved only with {n_more} sites in the asymmetric unit for the "
                                        f"{n_expected} non-H atoms expected (R1 {result.figures.r1:.3f} with "
                                        f"{n_expected}): disorder (e.g. a molecule across a symmetry element in two "
                                        "orientations) or contents that undercount; check the model")
            else:
                more.phasing.notes.insert(0, f"the first try with {n_expected} sites failed (R1 "
                                             f"{result.figures.r1:.3f}); a second phasing for {n_more} sites "
                                             "solved it, its model then cut back to the atoms expected")
            result = more
        else:
            result.warnings.append(f"a model with {n_more} sites did not do well enough either (R1 "
                                   f"{more.figures.r1:.3f}; with more sites than atoms, solved means R1 < "
                                   f"{MORE_SITES_MAX_R1})" if more.figures is not None
                                   else f"a model with {n_more} sites failed too")
    result.warnings[:0] = warnings
    result.stages = timer.stages
    if result.figures is not None:
        progress(1.0, f"done: R1 {result.figures.r1:.4f}")
    return result


# Above this R1 a structure of a few atoms is searched for over Wyckoff positions too; the search
# is kept if it refines below UNSOLVED_R1 and below WYCKOFF_GAIN times the first model's R1.
# A model of at most MAX_SITES atoms is checked against the search whatever its R1: with so few
# sites a wrong element pair can refine well (simulated 3R-MoSe2, Mo and Se exchanged: R1 0.045).
WYCKOFF_TRY_R1 = 0.05
WYCKOFF_GAIN = 0.9


def _solve_by_wyckoff(structure: Structure, data: PreparedData, options: SolveOptions, in_use,
                      first: SolveResult, timer: _Timer, progress: Progress) -> SolveResult | None:
    """The structure from the best arrangement of the contents over Wyckoff positions
    (core.wyckoff_search), finished as any model; None if no arrangement beats `first`."""
    counts = integer_counts(in_use.contents)
    if counts is None:
        return None
    progress(0.5, "search over Wyckoff positions")
    ranked = timer.run("search", refined_candidates, structure.symmetry, counts, data.f_obs, data.fo_sq,
                       data.wilson_b, _starting_u(data))
    current = first.figures.r1 if first.figures is not None else math.inf
    if not ranked or ranked[0].r1 >= min(UNSOLVED_R1, WYCKOFF_GAIN * current):
        return None
    best = ranked[0]
    atoms = [Atom(label=sc.label, element=sc.scattering_type, xyz=tuple(sc.site), uiso=sc.u_iso,
                  element_probabilities=probs, confidence=confidence_given_atom(probs, sc.scattering_type))
             for sc, probs in zip(best.xs.scatterers(), site_probabilities(ranked))]
    where = ", ".join(f"{el} {letter}" for el, letter in zip(best.candidate.elements, best.candidate.letters))
    f_calc = data.f_obs.structure_factors_from_scatterers(best.xs, algorithm="direct").f_calc()
    phasing = PhasingResult("Wyckoff-position search", f_calc, notes=[
        f"{len(ranked)} distinct arrangements refined; best {where} (R1 {best.r1:.3f})"
        + (f", next R1 {ranked[1].r1:.3f}" if len(ranked) > 1 else "")])
    return _finish(structure, best.xs, atoms, data, options, in_use, phasing, [], timer, progress)


RETYPE_WORSE = 1.2  # a completed, retyped model refining to more than this times the R1 before is undone
MORE_SITES_FACTOR = 1.5  # sites tried, per non-H atom the contents give, when that count failed
# A model with more sites than atoms fits more. On simulated test-split structures
# (bench/elements_solve.py) the second tries that were right ended at R1 0.03-0.15, the wrong ones
# (most atoms not found) at 0.18-0.24; the validation split checks the bound (docs/BENCHMARKS.md).
MORE_SITES_MAX_R1 = 0.16


def _difference_cycles(xs: xray.structure, atoms: list[Atom], data: PreparedData, contents: dict[str, float],
                       typer: AtomTyper, sym: crystal.symmetry, z: float | None, candidates: tuple[str, ...],
                       n_expected: int, cycles: int, timer: _Timer, progress: Progress,
                       notes: list[str]) -> tuple[xray.structure, list[Atom]]:
    """Isotropic refinement, then pruning, completion from the difference map and retyping, up to
    `cycles` times; a step that makes the model refine worse is undone."""
    before = None  # (R1, model, atoms) of the cycle before
    for cycle in range(cycles):
        progress(0.55 + 0.05 * cycle, f"refinement and difference map, cycle {cycle + 1}")
        set_refinement_flags(xs, aniso=False)
        result = timer.run(f"refine_iso_{cycle + 1}", refine, xs, data.fo_sq, 8)
        if before is not None and result.figures.r1 > RETYPE_WORSE * before[0]:
            # the last completion and retyping made the model worse (simulated Li2CO3: the network
            # swapped C and O on retyping, R1 0.05 -> 0.17): back to the model before, less what
            # its refinement pruned (there, two spurious Li that went up to Uiso > 0.15)
            notes.append(f"the model retyped after cycle {cycle} refined to R1 {result.figures.r1:.3f}, "
                         f"worse than {before[0]:.3f} before: that model kept, pruned")
            xs, atoms = _prune(before[1], before[2])
            break
        before = (result.figures.r1, xs.deep_copy_scatterers(), copy.deepcopy(atoms))
        xs, atoms, added = _complete_and_retype(xs, atoms, result, data, contents, typer, sym, z,
                                                candidates, n_expected, timer, f"_{cycle + 1}")
        if added == 0 and cycle > 0:
            break
    return xs, atoms


def _solve_for_count(structure: Structure, data: PreparedData, options: SolveOptions, in_use, n_expected: int,
                     timer: _Timer, progress: Progress) -> SolveResult:
    """Phasing, model building, typing and refinement for `n_expected` sites in the asymmetric
    unit; with cell contents, a model with more sites than they give atoms is then tried cut back
    to their count. The result's warnings are this attempt's only."""
    sym = structure.symmetry
    contents, candidates, formula_used = in_use.contents, in_use.candidate_elements, bool(in_use.contents)
    warnings: list[str] = []
    typer = options.typer or BaselineTyper()
    progress(0.05, f"phasing ({(options.phaser or ChargeFlippingPhaser).name})")
    phasing, xs, chosen_map = _phase_and_choose(data, sym, contents, n_expected, options, timer, progress)
    base = SolveResult(False, structure, None, data, None, phasing, timer.stages, warnings, formula_used)
    if not phasing.solved:
        warnings.append("phasing found no solution")
        return base
    if xs is None:
        warnings.append("the maps have no peaks")
        return base

    progress(0.5, "typing atoms")
    xs, atoms = timer.run("atom_typing", _type_atoms, xs, data, contents, typer, sym, chosen_map,
                          structure.z, candidates)
    xs, atoms = _difference_cycles(xs, atoms, data, contents, typer, sym, structure.z, candidates, n_expected,
                                   options.difference_cycles, timer, progress, phasing.notes)
    iso_r1 = None  # the isotropic R1 of xs once a look has refined it
    for round_ in range(DOUBTFUL_ROUNDS):
        xs, atoms, better, iso_r1 = timer.run(f"doubtful_sites_{round_ + 1}", _replace_doubtful_sites, xs, atoms,
                                              data, contents, typer, sym, structure.z, candidates, n_expected,
                                              phasing.notes, iso_r1)
        if not better:
            break
    if formula_used:
        xs, atoms, _ = timer.run("trim_to_count", _trim_to_count, xs, atoms, data, contents, typer, sym, structure.z,
                                 candidates, options.difference_cycles, phasing.notes, iso_r1)
    return _finish(structure, xs, atoms, data, options, in_use, phasing, warnings, timer, progress)


def _finish(structure: Structure, xs: xray.structure, atoms: list[Atom], data: PreparedData, options: SolveOptions,
            in_use, phasing: PhasingResult, warnings: list[str], timer: _Timer, progress: Progress) -> SolveResult:
    """From a typed model of the non-H atoms: anisotropic refinement, element swaps, riding H,
    weighting, the final model and figures."""
    contents, formula_used = in_use.contents, bool(in_use.contents)
    aniso = data.d_min < 1.2 and data.fo_sq.size() > 8 * 9 * xs.scatterers().size()
    progress(0.75, "anisotropic refinement" if aniso else "isotropic refinement")
    xs, result, aniso = _refine_heavy(xs, data, options.refine_cycles, aniso, timer, warnings)
    if result.figures.r1 < UNSOLVED_R1:
        xs, result = timer.run("displacement_exchanges", exchange_by_displacement, xs, result, atoms, data.fo_sq,
                               phasing.notes)
    n_heavy = xs.scatterers().size()

    for k, sc in enumerate(xs.scatterers()):
        sc.label = f"X{k + 1}"  # unique labels, so that smtbx's messages name one atom
    heavy_xs = xs.deep_copy_scatterers()
    with_h = options.hydrogens != "none" and result.figures.r1 < UNSOLVED_R1
    # the swap test judges with riding H even when the model is to be left without them
    if formula_used and options.element_swaps and result.figures.r1 < SWAP_MAX_R1:
        progress(0.8, "element swaps with riding H")
        n_notes = len(phasing.notes)
        heavy_xs = timer.run("element_swaps", _swap_elements, heavy_xs, atoms, data, structure, aniso,
                             phasing.notes)
        if len(phasing.notes) > n_notes:  # elements were swapped: the difference map must follow
            result = refine(heavy_xs, data.fo_sq, 2)
    groups = _hydrogen_groups(heavy_xs, result, data, structure, timer, progress, options.h_counter, contents,
                              warnings) if with_h else []
    progress(0.92, "final refinement")
    xs, result, groups, constraints = _refine_with_hydrogens(heavy_xs, groups, data, aniso, timer, warnings)
    weight = optimise_weights(data.fo_sq, result.fc_sq, result.figures.n_parameters, result.figures.scale)
    result = timer.run("refine_weighted", refine, xs, data.fo_sq, 4, constraints, weight)
    f_calc = data.fo_sq.structure_factors_from_scatterers(xs, algorithm="direct").f_calc()
    model = to_structure(structure, xs, atoms[:n_heavy], groups)
    if in_use.problem:  # the written UNIT counts the model, not the contents it could not believe
        model.cell_contents = {}
    solved = result.figures.r1 < UNSOLVED_R1
    if not solved:
        warnings.append(f"not solved: best R1 {result.figures.r1:.3f} (solved means R1 < {UNSOLVED_R1})")
    return SolveResult(solved, model, result.figures, data, f_calc, phasing, timer.stages, warnings,
                       formula_used)


def to_structure(template: Structure, xs: xray.structure, heavy_atoms: list[Atom],
                 groups: list[HydrogenGroup]) -> Structure:
    """The refined cctbx model as a Structure: heavy atoms labelled by element, each followed by its H."""
    uc = xs.unit_cell()
    scatterers = xs.scatterers()
    n_heavy = len(heavy_atoms)
    counters: dict[str, int] = {}
    labels = []
    for a in heavy_atoms:
        counters[a.element] = counters.get(a.element, 0) + 1
        labels.append(f"{a.element}{counters[a.element]}")
    h_of: dict[int, tuple[HydrogenGroup, int]] = {}
    start = n_heavy
    for g in groups:
        h_of[g.pivot] = (g, start)
        start += len(g.sites_frac)
    out_atoms: list[Atom] = []
    for i, a in enumerate(heavy_atoms):
        sc = scatterers[i]
        atom = Atom(label=labels[i], element=a.element, xyz=tuple(sc.site), occupancy=1.0,
                    element_probabilities=a.element_probabilities, confidence=a.confidence)
        if sc.flags.use_u_aniso():
            atom.uaniso, atom.uiso = tuple(u_star_to_u_cif(uc, sc.u_star)), None
        else:
            atom.uiso = sc.u_iso
        out_atoms.append(atom)
        if i in h_of:
            g, first = h_of[i]
            number = labels[i][len(a.element):]
            for k in range(len(g.sites_frac)):
                suffix = "ABC"[k] if len(g.sites_frac) > 1 else ""
                label = f"H{number}{suffix}"
                if len(label) > 4:
                    label = f"H{(first + k) % 1000}"
                h = scatterers[first + k]
                out_atoms.append(Atom(label=label, element="H", xyz=tuple(h.site), uiso=h.u_iso,
                                      occupancy=h.occupancy, afix=g.afix, afix_start=k == 0, riding_u=g.u_factor))
    st = Structure(cell=template.cell, space_group=template.space_group, title=template.title,
                   wavelength=template.wavelength, cell_esd=template.cell_esd, z=template.z,
                   cell_contents=dict(template.cell_contents), atoms=out_atoms, hklf=template.hklf or 4,
                   temperature=template.temperature, sfac_long=dict(template.sfac_long),
                   disp_lines=list(template.disp_lines))
    st.header_lines = [ln for ln in template.header_lines if ln.split()[:1] and ln.split()[0].upper() in
                       ("L.S.", "PLAN", "ACTA", "LIST", "FMAP", "BOND", "CONF", "TEMP", "SIZE")]
    return st


def assign_elements(structure: Structure, refl: ReflectionData, typer: AtomTyper | None = None,
                    use_formula: bool = True, complete: bool = False) -> list[tuple[str | None, Atom | None]]:
    """Elements for the model's non-H atoms and Q-peaks (a plugin's current model), from the data.

    Returns (original label, typed atom) per site, None where the typer says 'no atom'. With
    `complete`, a short refinement also rejects sites as in solve() (None too) and, with cell
    contents, atoms the model lacks are looked for in the difference map, typed, and returned
    with label None.
    """
    sites = list(structure.non_h_atoms()) + list(structure.peaks)
    if not sites:
        raise InputError(structure.source or "model", "no atoms or Q-peaks to assign")
    sym = structure.symmetry
    typer = typer or BaselineTyper()
    in_use = contents_in_use(structure, use_formula)
    contents = in_use.contents
    data = prepare(refl, sym, contents or {"C": 1.0})
    u0 = _starting_u(data)
    xs = structure_from_sites(sym, [a.xyz for a in sites], ["C"] * len(sites), u0)
    for k, sc in enumerate(xs.scatterers()):
        sc.label = f"S{k}"
    xs, atoms = _type_atoms(xs, data, contents, typer, sym, z=structure.z,
                            candidate_elements=in_use.candidate_elements)
    if complete:
        # as in solve(): a short refinement, then sites refinement rejects (huge U, crowding) are no atoms
        set_refinement_flags(xs, aniso=False)
        refine(xs, data.fo_sq, 8)
        xs, atoms = _prune(xs, atoms)
    by_label = {a.label: a for a in atoms}
    out: list[tuple[str | None, Atom | None]] = [(site.label, by_label.get(f"S{k}")) for k, site in enumerate(sites)]
    if complete and contents:
        n_expected = expected_atom_count(structure, contents)
        n_sites = xs.scatterers().size()
        for _cycle in range(3):  # one missing atom may only show once its neighbour is in
            set_refinement_flags(xs, aniso=False)
            result = refine(xs, data.fo_sq, 8)
            n_before = xs.scatterers().size()
            if not _add_from_difference_map(xs, result, data, n_expected - round(_site_weight(xs))):
                break
            for k in range(n_before, xs.scatterers().size()):
                xs.scatterers()[k].label = f"N{k}"
        if xs.scatterers().size() > n_sites:
            xs, atoms = _type_atoms(xs, data, contents, typer, sym, z=structure.z)
            out += [(None, a) for a in atoms if a.label.startswith("N")]
    return out


def _site_weight(xs: xray.structure) -> float:
    """Atoms in the asymmetric unit, an atom on a special position counting 1/(its site order)."""
    return sum(asu_weights(xs.crystal_symmetry(), [sc.site for sc in xs.scatterers()]))


def add_hydrogens(structure: Structure, refl: ReflectionData, counter: HydrogenCounter | None = None
                  ) -> tuple[Structure, Figures, list[str]]:
    """Riding hydrogens on the model's non-H atoms (existing H removed), refined with the data;
    counts from `counter` (checked against valence) or the geometry rules."""
    heavy = list(structure.non_h_atoms())
    if not heavy:
        raise InputError(structure.source or "model", "no non-H atoms to put hydrogens on")
    timer, warnings = _Timer(), []
    data = prepare(refl, structure.symmetry, structure.cell_contents or {"C": 1.0})
    bare = Structure(cell=structure.cell, space_group=structure.space_group, atoms=heavy)
    xs = bare.to_xray(include_hydrogens=False)
    for k, sc in enumerate(xs.scatterers()):
        sc.label = f"X{k + 1}"
    aniso = any(sc.flags.use_u_aniso() for sc in xs.scatterers())
    set_refinement_flags(xs, aniso=aniso)
    result = refine(xs, data.fo_sq, 4)
    groups = _hydrogen_groups(xs, result, data, structure, timer, no_progress, counter, structure.cell_contents,
                              warnings)
    xs, result, groups, _ = _refine_with_hydrogens(xs.deep_copy_scatterers(), groups, data, aniso, timer, warnings)
    model = to_structure(structure, xs, heavy, groups)
    for atom, original in zip(model.non_h_atoms(), heavy):  # the user's labels, so that pivots can be named
        atom.label = original.label
    return model, result.figures, warnings
