"""SHELX .ins/.res reading and writing."""
from __future__ import annotations

import pytest

from aisolve.core.errors import InputError
from aisolve.core.shelx_ins import decode_parameter, read_ins, read_ins_text
from aisolve.core.shelx_write import WriteError, write_ins_text
from conftest import EXAMPLE, REAL_ENTRIES, REFL_ONLY_ENTRIES, entry_files

MODEL_FILES = [f for e in REAL_ENTRIES + REFL_ONLY_ENTRIES for f in entry_files(e, (".ins", ".res"))]


def assert_same_model(a, b):
    assert a.cell == pytest.approx(b.cell, abs=1e-4)
    assert a.space_group.type().lookup_symbol() == b.space_group.type().lookup_symbol()
    assert [x.label for x in a.atoms] == [x.label for x in b.atoms]
    assert [x.label for x in a.peaks] == [x.label for x in b.peaks]
    for x, y in zip(a.atoms + a.peaks, b.atoms + b.peaks):
        assert x.element == y.element, x.label
        assert x.xyz == pytest.approx(y.xyz, abs=1e-5), x.label
        assert x.occupancy == pytest.approx(y.occupancy, abs=1e-5), x.label
        assert (x.afix, x.part, x.residue, x.riding_u) == (y.afix, y.part, y.residue, y.riding_u), x.label
        assert (x.uaniso is None) == (y.uaniso is None), x.label
        if x.uaniso is not None:
            assert x.uaniso == pytest.approx(y.uaniso, abs=1e-5), x.label
        else:
            assert x.uiso == pytest.approx(y.uiso, abs=1e-5), x.label
        if x.peak_height is not None:
            assert x.peak_height == pytest.approx(y.peak_height, abs=1e-5)
    # UNIT is written as integers (SHELXL's convention), so fractional contents come back rounded.
    assert {k: max(round(v), 1 if v > 0 else 0) for k, v in a.cell_contents.items()} == \
        {k: max(round(v), 1 if v > 0 else 0) for k, v in b.cell_contents.items()}


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_real_model_round_trip(path):
    """.res -> model -> .res -> model keeps atoms, elements, xyz, U, occupancies, AFIX and Q-peaks."""
    st = read_ins(path)
    text = write_ins_text(st)
    st2 = read_ins_text(text, "written")
    assert_same_model(st, st2)
    # A second pass must be a fixed point: the writer is deterministic.
    assert write_ins_text(st2) == text


def test_example_ins_has_no_atoms_but_contents():
    st = read_ins(EXAMPLE / "sucrose.ins")
    assert st.atoms == [] and st.space_group.type().number() == 4
    assert st.cell_contents == {"C": 24, "H": 44, "O": 22}


def test_reference_features():
    st = read_ins(EXAMPLE / "reference" / "sucrose.res")
    assert len(st.non_h_atoms()) == 23 and len(st.hydrogens()) == 22 and len(st.peaks) == 10
    o23, h23 = st.atoms[3], st.atoms[4]
    assert (o23.label, h23.label, h23.afix, h23.afix_start, h23.riding_u) == ("O23", "H23", 147, True, 1.5)
    # Riding Uiso = 1.5 x Ueq of the pivot, as SHELXL computes it.
    assert h23.uiso == pytest.approx(1.5 * o23.u_equivalent(st.unit_cell))
    assert st.peaks[0].peak_height == pytest.approx(0.19) or st.peaks[0].peak_height > 0
    assert st.hklf == 4 and st.fvar == pytest.approx([3.6333])


INS_FEATURES = """TITL test
CELL 1.54184 10.0 11.0 12.0 90 100 90
ZERR 4 0.001 0.001 0.001 0 0.01 0
LATT 1
SYMM -X, 1/2+Y, 1/2-Z
SFAC C 2.3100 20.8439 1.0200 10.2075 1.5886 0.5687 0.8650 =
     51.6512 0.2156 0.0033 0.0016 1.15 0.7700 12.0110
SFAC H O
DISP O 0.01 0.02 30.0
UNIT 8 16 4
FVAR 1.2 0.7
PART 1 21
C1 1 10.5 0.2 0.3 21.0 0.02 0.03 =
   0.04 0.001 0.002 0.003
PART 2 -21
C1B 1 0.15 0.25 0.35 -21.0 0.05
PART 0
O1 3 0.4 0.5 0.6 11.0 0.03
AFIX 147
H1 2 0.45 0.55 0.65 11.0 -1.5
AFIX 0
HKLF4
END
Q1 1 0.1 0.1 0.1 11.0 0.05 1.23
"""


def test_features_are_decoded():
    st = read_ins_text(INS_FEATURES, "t.ins")
    assert st.wavelength == pytest.approx(1.54184)
    assert st.space_group.type().lookup_symbol() == "P 1 21/c 1"
    c1, c1b, o1, h1 = st.atoms
    assert c1.xyz[0] == pytest.approx(0.5) and c1.shelx_codes["x"] == 10.5
    assert c1.occupancy == pytest.approx(0.7) and c1b.occupancy == pytest.approx(0.3)
    assert c1.uaniso == pytest.approx((0.02, 0.03, 0.04, 0.001, 0.002, 0.003))
    assert (c1.part, c1.part_params, c1b.part) == (1, "21", 2)
    assert h1.afix == 147 and h1.uiso == pytest.approx(1.5 * 0.03)
    assert st.sfac == ["C", "H", "O"] and "C" in st.sfac_long
    assert st.disp_lines == ["DISP O 0.01 0.02 30.0"]
    assert st.hklf == 4
    assert [(p.label, p.peak_height) for p in st.peaks] == [("Q1", 1.23)]
    text = write_ins_text(st)
    assert "AFIX 147" in text and "AFIX 0" in text and "UNIT 8 16 4" in text
    assert text.index("END") < text.index("Q1")  # Q-peaks after the atoms, as SHELXL writes them
    assert_same_model(st, read_ins_text(text))


def test_decode_parameter():
    fv = [1.0, 0.6]
    assert decode_parameter(11.0, fv) == 1.0
    assert decode_parameter(-10.5, fv) == -0.5
    assert decode_parameter(21.0, fv) == pytest.approx(0.6)
    assert decode_parameter(-21.0, fv) == pytest.approx(0.4)
    assert decode_parameter(0.25, fv) == 0.25
    with pytest.raises(ValueError):
        decode_parameter(31.0, fv)


@pytest.mark.parametrize("text,problem,line", [
    ("TITL x\nLATT 1\nSFAC C\nUNIT 4\nC1 1 0 0 0\nEND\n", "no CELL card", None),
    ("TITL x\nCELL 0.7 5 5 5 90 90 90\nSFAC C Xx\nUNIT 4 4\nEND\n", "unknown element 'Xx' in SFAC", 3),
    ("TITL x\nCELL 0.7 5 5 5 90 90 90\nSFAC C\nUNIT 4\nC1 1 0.1 zz 0.3\nEND\n", "'zz' is not a number", 5),
    ("TITL x\nCELL 0.7 5 5 5 90 90 90\nSFAC C\nUNIT 4\nC1 3 0.1 0.2 0.3\nEND\n", "refers to SFAC 3", 5),
    ("TITL x\nCELL 0.7 5 5 5 90 90\nSFAC C\nEND\n", "CELL needs", 2),
    ("TITL x\nCELL 0.7 5 5 5 90 90 90\nSYMM X,Y,Q\nSFAC C\nEND\n", "symmetry operator", 3),
    ("TITL x\nCELL 0.7 5 5 5 90 90 90\nSFAC C\nUNIT 4 5\nEND\n", "UNIT gives 2 numbers", 4),
    ("TITL x\nCELL 0.7 5 5 5 90 90 90\nSFAC C\nUNIT 4\nthis is garbage\nEND\n", "not a SHELX instruction", 5),
])
def test_bad_ins_gives_one_clear_error(text, problem, line):
    with pytest.raises(InputError) as err:
        read_ins_text(text, "bad.ins")
    assert problem in str(err.value) and "bad.ins" in str(err.value)
    assert err.value.line == line


def test_writer_refuses_long_labels():
    st = read_ins_text(INS_FEATURES)
    st.atoms[0].label = "C123A"
    with pytest.raises(WriteError, match="longer than 4"):
        write_ins_text(st)
