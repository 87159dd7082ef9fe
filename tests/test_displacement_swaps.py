"""Element exchanges asked for by displacement parameters (core.displacement_swaps)."""
from __future__ import annotations

from pathlib import Path

from aisolve.core.data_prep import prepare
from aisolve.core.displacement_swaps import exchange_by_displacement, exchange_pairs
from aisolve.core.model import Atom
from aisolve.core.refine import refine, set_refinement_flags
from aisolve.core.shelx_ins import read_ins
from simulate import simulate_intensities

DATA = Path(__file__).parent / "data"


def _refined(model, swap: tuple[int, int] | None):
    """The model's non-H atoms refined against its simulated data, two of their elements exchanged first."""
    refl = simulate_intensities(model, d_min=0.8, noise=0.02)
    data = prepare(refl, model.symmetry, model.cell_contents, None)
    xs = model.to_xray(include_hydrogens=False)
    if swap is not None:
        a, b = (xs.scatterers()[k] for k in swap)
        a.scattering_type, b.scattering_type = b.scattering_type, a.scattering_type
        xs.discard_scattering_type_registry()
    set_refinement_flags(xs, aniso=False)
    result = refine(xs, data.fo_sq, 8)
    atoms = [Atom(label=sc.label, element=sc.scattering_type, xyz=tuple(sc.site)) for sc in xs.scatterers()]
    return result.xs, result, atoms, data


def _chlorotoluene():
    """o-iodotoluene with Cl for I: a swap with a C is a moderate error (I for C ruins the model)."""
    model = read_ins(DATA / "iodotoluene_packed.res")
    for atom in model.atoms:
        if atom.element == "I":
            atom.element = "Cl"
    model.cell_contents = {("Cl" if el == "I" else el): n for el, n in model.cell_contents.items()}
    return model


def test_a_chlorine_typed_carbon_gets_its_element_back():
    model = _chlorotoluene()
    elements = [a.element for a in model.non_h_atoms()]
    i, c = elements.index("Cl"), elements.index("C")
    xs, result, atoms, data = _refined(model, (i, c))
    assert exchange_pairs(xs)[0] == (i, c)  # the Cl site as C: tiny U; the C site as Cl: large U
    notes: list[str] = []
    xs, after = exchange_by_displacement(xs, result, atoms, data.fo_sq, notes)
    assert [a.element for a in atoms] == elements, notes
    assert [sc.scattering_type for sc in xs.scatterers()] == elements
    assert after.figures.wr2 < 0.5 * result.figures.wr2 and len(notes) == 1


def test_a_right_model_is_left_alone():
    model = _chlorotoluene()
    xs, result, atoms, data = _refined(model, None)
    notes: list[str] = []
    out, after = exchange_by_displacement(xs, result, atoms, data.fo_sq, notes)
    assert notes == [] and after is result
    assert [a.element for a in atoms] == [a.element for a in model.non_h_atoms()]
