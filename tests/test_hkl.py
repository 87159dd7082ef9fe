"""SHELX .hkl reading and writing."""
from __future__ import annotations

import numpy as np
import pytest

from aisolve.core.errors import InputError
from aisolve.core.shelx_hkl import read_hkl, read_hkl_text, write_hkl_text
from conftest import EXAMPLE, REAL_ENTRIES, REFL_ONLY_ENTRIES, entry_files

HKL_FILES = [f for e in REAL_ENTRIES + REFL_ONLY_ENTRIES for f in entry_files(e, (".hkl",))]


@pytest.mark.parametrize("path", HKL_FILES, ids=lambda p: p.name)
def test_real_hkl_round_trip(path):
    refl = read_hkl(path)
    again = read_hkl_text(write_hkl_text(refl))
    assert np.array_equal(refl.indices, again.indices)
    assert np.array_equal(refl.data, again.data)
    assert np.array_equal(refl.sigmas, again.sigmas)


def test_example_is_written_back_byte_identical():
    text = (EXAMPLE / "sucrose.hkl").read_text()
    assert write_hkl_text(read_hkl_text(text)) == text


def test_hklf3_and_batch_column():
    text = "   1   2   3   10.50    0.50   1\n  -1  -2  -3    9.00    0.40  -2\n   0   0   0    0.00    0.00\n"
    refl = read_hkl_text(text, hklf=3)
    assert not refl.is_intensity and refl.hklf == 3
    assert refl.batch.tolist() == [1, -2]
    assert refl.data.tolist() == [10.5, 9.0]
    assert write_hkl_text(refl) == text


def test_stops_at_terminator_and_reads_free_format():
    refl = read_hkl_text("1 2 3 4.5 0.5\n   0   0   0    0.00    0.00\ngarbage after the end\n")
    assert len(refl) == 1 and refl.indices.tolist() == [[1, 2, 3]]


def test_missing_terminator_is_a_warning():
    refl = read_hkl_text("   1   2   3   10.50    0.50\n")
    assert any("truncated" in w for w in refl.warnings)


def test_truncated_file_names_the_line():
    with pytest.raises(InputError) as err:
        read_hkl_text("   1   2   3   10.50    0.50\n   1   2   4   1", "t.hkl")
    assert err.value.line == 2 and "truncated" in str(err.value) and "t.hkl" in str(err.value)


def test_text_garbage_names_the_line():
    with pytest.raises(InputError) as err:
        read_hkl_text("   1   2   3   10.50    0.50\nthis is not a reflection\n", "g.hkl")
    assert err.value.line == 2 and "not a reflection line" in str(err.value)


def test_empty_file():
    with pytest.raises(InputError, match="no reflections"):
        read_hkl_text("\n", "e.hkl")
