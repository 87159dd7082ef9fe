"""CIF and MTZ reading and writing."""
from __future__ import annotations

import gemmi
import numpy as np
import pytest

from aisolve.core.cif_io import read_cif, write_cif_text
from aisolve.core.errors import InputError
from aisolve.core.model import ReflectionData
from aisolve.core.mtz_io import read_mtz, write_mtz, write_reflections_mtz
from aisolve.core.shelx_ins import read_ins
from conftest import EXAMPLE, REAL_ENTRIES, REFL_ONLY_ENTRIES, entry_files

CIF_FILES = [f for e in REAL_ENTRIES for f in entry_files(e, (".cif",))] + \
    [f for e in REFL_ONLY_ENTRIES for f in sorted((e / "source").glob("*.cif"))]


@pytest.mark.parametrize("path", CIF_FILES, ids=lambda p: p.parent.name if p.parent.name != "source" else p.parent.parent.name)
def test_real_cif_reads(path):
    content = read_cif(path)
    assert content.structure is not None or content.reflections is not None
    if content.reflections is not None:
        assert len(content.reflections) > 0 and content.reflections.cell is not None
    if content.structure is not None and content.structure.atoms:
        st = content.structure
        again = read_cif_text(write_cif_text(st), path.name)
        assert [a.label for a in again.atoms] == [a.label for a in st.atoms]
        for a, b in zip(st.atoms, again.atoms):
            assert a.element == b.element
            assert a.xyz == pytest.approx(b.xyz, abs=1e-5)
            if a.uaniso is not None:
                assert b.uaniso == pytest.approx(a.uaniso, abs=1e-5)


def read_cif_text(text, name, tmp_dir=None):
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_text(text)
        return read_cif(p).structure


def test_embedded_res_and_hkl_written_and_read(tmp_path):
    st = read_ins(EXAMPLE / "reference" / "sucrose.res")
    res = (EXAMPLE / "reference" / "sucrose.res").read_text()
    hkl = (EXAMPLE / "sucrose.hkl").read_text()
    path = tmp_path / "s.cif"
    path.write_text(write_cif_text(st, res_text=res, hkl_text=hkl))
    content = read_cif(f"{path}#sucrose_20170113_a.res")
    assert content.res_text.strip() == res.strip()
    assert len(content.reflections) == 13643
    assert content.structure.space_group.type().number() == 4
    assert content.structure.cell_contents == pytest.approx({"C": 24, "H": 44, "O": 22}, rel=1e-4)


def test_cif_block_selection_errors(tmp_path):
    p = tmp_path / "a.cif"
    p.write_text("data_one\n_cell_length_a 5\n")
    with pytest.raises(InputError, match="no data block named 'two'"):
        read_cif(f"{p}#two")
    with pytest.raises(InputError, match="no atoms and no reflections"):
        read_cif(p)


def test_cif_with_no_atoms_is_refused(tmp_path):
    p = tmp_path / "noatoms.cif"
    p.write_text("data_x\n_cell_length_a 5\n_cell_length_b 6\n_cell_length_c 7\n_cell_angle_alpha 90\n"
                 "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\n"
                 "loop_\n_atom_site_label\n_atom_site_fract_x\n")
    with pytest.raises(InputError) as err:
        read_cif(p)
    assert "noatoms.cif" in str(err.value) and "no atoms" in str(err.value)


def test_listed_symmetry_copies_are_left_out_with_a_warning(tmp_path):
    """An atom listed with its inversion copy (COD 2000056 lists C1B* and N1B*) is one atom; half
    occupied partners on the same site are not copies."""
    p = tmp_path / "copies.cif"
    p.write_text("data_x\n_cell_length_a 5\n_cell_length_b 6\n_cell_length_c 7\n_cell_angle_alpha 90\n"
                 "_cell_angle_beta 100\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1 21/c 1'\n"
                 "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n"
                 "_atom_site_fract_z\n_atom_site_occupancy\n"
                 "C1 C 0.0048 0.4260 0.0063 1\nN1 N 0.1300 0.3850 0.0602 1\n"
                 "C1B* C -0.0048 0.5740 -0.0063 1\nO1 O 0.3 0.2 0.1 0.5\nO2 O 0.3 0.2 0.1 0.5\n")
    st = read_cif(p).structure
    assert [a.label for a in st.atoms] == ["C1", "N1", "O1", "O2"]
    assert any("C1B* is a symmetry copy of C1" in w for w in st.warnings), st.warnings


def _spinel_cif(tmp_path, origin_choice: str, metals: str, z: int = 8):
    p = tmp_path / f"spinel{origin_choice}{z}.cif"
    p.write_text("data_x\n_cell_length_a 8.34\n_cell_length_b 8.34\n_cell_length_c 8.34\n_cell_angle_alpha 90\n"
                 "_cell_angle_beta 90\n_cell_angle_gamma 90\n"
                 f"_symmetry_space_group_name_H-M 'F d -3 m :{origin_choice}'\n"
                 f"_chemical_formula_sum 'Fe2 Ni O4'\n_cell_formula_units_Z {z}\n"
                 "loop_\n_atom_site_label\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
                 f"{metals}O1 0.387 0.387 0.387\n")
    return read_cif(p).structure


def test_atoms_that_contradict_the_formula_are_reported(tmp_path):
    """NiFe2O4 as COD 5910064 gives it: origin-choice-1 coordinates (Ni on 8a at the origin, Fe on
    16d) under the origin-choice-2 symbol, where the origin is a 16c site, 5/8 an 8b one and the O
    0.17 A from the other 8b site (taken as on it). The same coordinates with the right symbol add
    up to the formula; with a Z half the true one, every count is off by one factor."""
    metals = "Ni1 0 0 0\nFe1 0.625 0.625 0.625\n"
    wrong = _spinel_cif(tmp_path, "2", metals)
    assert wrong.model_formula_per_cell() == pytest.approx({"Ni": 16, "Fe": 8, "O": 8})
    assert any("the atoms add up to Fe8 Ni16 O8" in w and "Fe, Ni, O differ" in w for w in wrong.warnings), \
        wrong.warnings
    right = _spinel_cif(tmp_path, "1", metals)
    assert right.model_formula_per_cell() == pytest.approx({"Ni": 8, "Fe": 16, "O": 32})
    assert not any("add up to" in w for w in right.warnings), right.warnings
    wrong_z = _spinel_cif(tmp_path, "1", metals, z=4)
    assert any(w.endswith("(Z 8 instead of 4?)") for w in wrong_z.warnings), wrong_z.warnings


def test_broken_cif_syntax_names_the_line(tmp_path):
    p = tmp_path / "broken.cif"
    p.write_text("data_x\n_cell_length_a 5\nloop_\n_a\n_b\n1\n'unterminated\n")
    with pytest.raises(InputError) as err:
        read_cif(p)
    assert "broken.cif" in str(err.value)


def _merged_example():
    st = read_ins(EXAMPLE / "sucrose.ins")
    from aisolve.core.shelx_hkl import read_hkl
    ma = read_hkl(EXAMPLE / "sucrose.hkl").miller_array(st.symmetry).merge_equivalents().array()
    refl = ReflectionData(indices=np.array(ma.indices(), dtype=np.int32), data=ma.data().as_numpy_array(),
                          sigmas=ma.sigmas().as_numpy_array(), merged=True)
    return st, refl


def test_mtz_written_then_read_back_equal(tmp_path):
    st, refl = _merged_example()
    phases = np.linspace(-180, 180, len(refl))
    path = tmp_path / "x.mtz"
    write_reflections_mtz(path, refl, st.cell, st.space_group, phases_deg=phases, fom=np.full(len(refl), 0.8))
    back = read_mtz(path)
    assert np.array_equal(back.indices, refl.indices)
    assert back.data == pytest.approx(refl.data, rel=1e-6)  # MTZ stores float32
    assert back.sigmas == pytest.approx(refl.sigmas, rel=1e-6)
    assert back.cell == pytest.approx(st.cell, abs=1e-4)
    assert back.space_group.type().number() == 4 and back.is_intensity
    mtz = gemmi.read_mtz_file(str(path))
    assert mtz.column_labels() == ["H", "K", "L", "I", "SIGI", "PHI", "FOM"]
    assert np.array(mtz.column_with_label("PHI")) == pytest.approx(phases, abs=1e-3)


def test_mtz_amplitudes_and_missing_columns(tmp_path):
    st, refl = _merged_example()
    f = np.sqrt(np.clip(refl.data, 0, None))
    write_mtz(tmp_path / "f.mtz", st.cell, st.space_group, refl.indices, [("FP", "F", f), ("SIGFP", "Q", f * 0.05)])
    back = read_mtz(tmp_path / "f.mtz")
    assert not back.is_intensity and back.data == pytest.approx(f, rel=1e-6)
    write_mtz(tmp_path / "bad.mtz", st.cell, st.space_group, refl.indices, [("PHI", "P", f)])
    with pytest.raises(InputError) as err:
        read_mtz(tmp_path / "bad.mtz")
    assert "no intensity" in str(err.value) and "PHI" in str(err.value)


def test_element_from_label_conventions():
    from aisolve.core.elements import element_from_label
    assert [element_from_label(x) for x in ("Cl1", "CL2", "C12", "H1A", "HE1", "Hg1", "O")] == \
        ["Cl", "Cl", "C", "H", "H", "Hg", "O"]


@pytest.mark.parametrize("intensity", [True, False])
def test_refln_loop_round_trip(tmp_path, intensity):
    from aisolve.core.shelx_hkl import read_hkl
    st = read_ins(EXAMPLE / "reference" / "sucrose.res")
    refl = read_hkl(EXAMPLE / "sucrose.hkl", hklf=4 if intensity else 3)
    p = tmp_path / "r.cif"
    p.write_text(write_cif_text(st, block_name="r", reflections=refl))
    back = read_cif(p).reflections
    assert back.is_intensity == intensity and np.array_equal(back.indices, refl.indices)
    assert back.data == pytest.approx(refl.data, rel=1e-5) and back.sigmas == pytest.approx(refl.sigmas, rel=1e-5)
