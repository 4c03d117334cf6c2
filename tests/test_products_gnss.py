"""GNSS adapters: MIDAS velocities and NGL tenv3 daily positions, on the real NGL files in
shared/data/real/gnss, checked against an independent parse written here."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from ncp_subsidence.errors import DataError
from ncp_subsidence.io.products.midas import MIDAS_COLUMNS, read_midas
from ncp_subsidence.io.products.tenv3 import read_tenv3

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "gnss"
MIDAS = REAL / "midas.IGS14_sample.txt"
TENV3 = REAL / "LHAS.tenv3"


def _columns(path, names):
    """Independent parse: whitespace split, named columns as float (station ids as str)."""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    out = {}
    for name in names:
        k = MIDAS_COLUMNS.index(name)
        out[name] = (
            [r[k] for r in rows] if name == "station" else np.array([float(r[k]) for r in rows])
        )
    return out


# ------------------------------------------------------------------------------------------
# MIDAS
# ------------------------------------------------------------------------------------------


def test_real_midas_longitudes_and_velocities():
    table, report = read_midas(str(MIDAS))
    raw = _columns(MIDAS, ("station", "lon", "lat", "height", "ve", "vn", "vu", "se", "sn", "su"))
    assert list(table["station"]) == raw["station"]
    assert list(table.columns) == [
        "station", "lon", "lat", "height", "ve", "vn", "vu", "se", "sn", "su", "t_first", "t_last",
    ]  # fmt: skip
    # 00NA (Darwin) is written -229.1560118921: 130.8439881079 E
    darwin = table.set_index("station").loc["00NA"]
    assert darwin["lon"] == pytest.approx(130.844, abs=1e-3)
    assert darwin["lon"] == pytest.approx(-229.1560118921 + 360.0, abs=1e-9)
    assert darwin["lat"] == pytest.approx(-12.4666386637, abs=1e-12)
    assert report["n_lon_normalised"] == 1
    assert np.all((table["lon"] >= -180) & (table["lon"] < 180))
    # other longitudes untouched, bit for bit
    others = table["station"] != "00NA"
    np.testing.assert_array_equal(table["lon"][others], raw["lon"][others.to_numpy()])
    # velocities and sigmas: file m/yr x 1000 = mm/yr
    for c in ("ve", "vn", "vu", "se", "sn", "su"):
        np.testing.assert_allclose(table[c].to_numpy(), raw[c] * 1000.0, rtol=1e-15)
    assert darwin["ve"] == pytest.approx(36.213) and darwin["su"] == pytest.approx(0.919)
    assert report["n_kept"] == report["n_lines"] == 9
    assert report["dropped"] == {"nan": [], "nonpositive_sigma": [], "duplicate": []}


def test_midas_quality_screen(tmp_path, caplog):
    lines = MIDAS.read_text().splitlines()
    by_id = {line.split()[0]: line for line in lines}

    def edit(source, **values):
        parts = by_id[source].split()
        for name, value in values.items():
            parts[MIDAS_COLUMNS.index(name)] = value
        return " ".join(parts)

    text = [
        *lines,
        edit("AZCG", station="NANV", ve="nan"),  # NaN velocity
        edit("AZCG", station="NANS", su="NaN"),  # NaN sigma
        edit("AZCG", station="ZERO", sn="0.000000"),  # zero sigma
        edit("AZCG", station="NEGS", se="-0.000100"),  # negative sigma
        edit("CAS7", duration="30.0000", ve="0.001000"),  # CAS7 again, longer series: kept
        edit("TIBB", duration="1.0000"),  # TIBB again, shorter: dropped
        edit("UNR1"),  # UNR1 again, equal length: the first is kept
        "BAD1 MIDAS5 2008.2 2018.7",  # malformed
        edit("AZCG", station="BAD2", vn="x.yz"),  # does not parse
    ]
    path = tmp_path / "midas.txt"
    path.write_text("\n".join(text) + "\n")
    with caplog.at_level(logging.INFO, logger="ncp_subsidence.io.products.midas"):
        table, report = read_midas(str(path))
    assert report["n_lines"] == 18
    assert report["n_malformed"] == 2 and report["malformed_lines"] == [17, 18]
    assert report["n_nan"] == 2 and report["dropped"]["nan"] == ["NANV", "NANS"]
    assert report["n_nonpositive_sigma"] == 2
    assert report["dropped"]["nonpositive_sigma"] == ["ZERO", "NEGS"]
    assert report["n_duplicate"] == 3
    assert sorted(report["dropped"]["duplicate"]) == ["CAS7", "TIBB", "UNR1"]
    assert report["n_kept"] == 9 and len(table) == 9
    assert table["station"].is_unique
    kept = table.set_index("station")
    assert kept.loc["CAS7", "ve"] == pytest.approx(1.0)  # the 30-year duplicate row
    assert kept.loc["TIBB", "ve"] == pytest.approx(-31.467)  # the original (longer) row
    # one log line per kind
    messages = [r.getMessage() for r in caplog.records]
    for kind in ("malformed", "for nan", "for nonpositive_sigma", "for duplicate"):
        assert sum(kind in m for m in messages) == 1, (kind, messages)


def test_midas_nothing_usable_or_missing(tmp_path):
    path = tmp_path / "bad.txt"
    line = MIDAS.read_text().splitlines()[0].split()
    line[MIDAS_COLUMNS.index("ve")] = "nan"
    path.write_text(" ".join(line) + "\nshort line\n")
    with pytest.raises(DataError, match="no usable station"):
        read_midas(str(path))
    with pytest.raises(DataError, match="not found"):
        read_midas(str(tmp_path / "absent.txt"))


# ------------------------------------------------------------------------------------------
# tenv3
# ------------------------------------------------------------------------------------------


def _tenv3_rows(path):
    lines = path.read_text().splitlines()
    assert lines[0].split()[0] == "site"
    return [line.split() for line in lines[1:] if line.strip()]


def test_real_tenv3_lhas():
    ds = read_tenv3(str(TENV3))
    rows = _tenv3_rows(TENV3)
    assert ds.sizes["time"] == len(rows) == 3631
    assert ds.attrs["station"] == "LHAS"
    # first and last day (95MAY19, 07JAN29), stamped at noon as the decimal years say
    assert ds["time"].values[0] == np.datetime64("1995-05-19T12:00", "ns")
    assert ds["time"].values[-1] == np.datetime64("2007-01-29T12:00", "ns")
    # against the MJD column: MJD 0 = 1858-11-17
    mjd = np.array([int(r[3]) for r in rows])
    from_mjd = np.datetime64("1858-11-17T12:00", "ns") + mjd.astype("timedelta64[D]")
    np.testing.assert_array_equal(ds["time"].values, from_mjd)
    np.testing.assert_array_equal(ds["mjd"].values, mjd)
    # against the decimal year column (J2000 noon, Julian years, 4 decimals)
    years = np.array([float(r[2]) for r in rows])
    implied = (
        2000.0
        + (ds["time"].values - np.datetime64("2000-01-01T12:00", "ns"))
        / np.timedelta64(1, "D")
        / 365.25
    )
    assert np.max(np.abs(implied - years)) <= 0.5e-4 + 1e-9
    # position: longitude -268.896 -> 91.104 E, latitude, height of the first epoch
    assert ds.attrs["lon"] == pytest.approx(91.104, abs=1e-3)
    assert ds.attrs["lon"] == pytest.approx(-268.8960142076 + 360.0, abs=1e-9)
    assert ds.attrs["lat"] == pytest.approx(29.6573392384)
    assert ds.attrs["height"] == pytest.approx(3624.70788)
    # up in mm relative to the first epoch: (u0 + up) - (u0_0 + up_0), m -> mm
    u = np.array([int(r[11]) for r in rows]), np.array([float(r[12]) for r in rows])
    e = np.array([int(r[7]) for r in rows]), np.array([float(r[8]) for r in rows])
    up_mm = ((u[0] - u[0][0]) + (u[1] - u[1][0])) * 1000.0
    east_mm = ((e[0] - e[0][0]) + (e[1] - e[1][0])) * 1000.0
    np.testing.assert_allclose(ds["up"].values, up_mm, atol=1e-9)
    np.testing.assert_allclose(ds["east"].values, east_mm, atol=1e-9)
    assert ds["up"].values[1] == pytest.approx((0.721752 - 0.707878) * 1000.0, abs=1e-9)  # 13.874
    assert ds["up"].values[-1] == pytest.approx((0.654689 - 0.707878) * 1000.0, abs=1e-9)
    assert ds["east"].values[-1] == pytest.approx((1.423936 - 0.888603) * 1000.0, abs=1e-9)
    assert ds["up"].attrs["units"] == "mm"
    # sigmas in mm
    assert ds["sigma_up"].values[0] == pytest.approx(8.643)
    assert ds["sigma_east"].values[-1] == pytest.approx(0.788)
    assert ds["antenna_height"].values[-1] == pytest.approx(0.058)


def test_tenv3_bad_files(tmp_path):
    rows = TENV3.read_text().splitlines()
    two_sites = tmp_path / "two.tenv3"
    two_sites.write_text("\n".join([rows[1], rows[2].replace("LHAS", "XXXX", 1)]) + "\n")
    with pytest.raises(DataError, match="several stations"):
        read_tenv3(str(two_sites))
    wrong_year = tmp_path / "year.tenv3"
    wrong_year.write_text(rows[1].replace("1995.3785", "1995.4785") + "\n")
    with pytest.raises(DataError, match="disagrees with its decimal year"):
        read_tenv3(str(wrong_year))
    short = tmp_path / "short.tenv3"
    short.write_text(rows[0] + "\n" + " ".join(rows[1].split()[:20]) + "\n")
    with pytest.raises(DataError, match="line 2 has 20 fields"):
        read_tenv3(str(short))
    twice = tmp_path / "twice.tenv3"
    twice.write_text("\n".join([rows[1], rows[1]]) + "\n")
    with pytest.raises(DataError, match="1995-05-19 twice"):
        read_tenv3(str(twice))


def test_tenv3_column_reader_equals_the_line_reader(tmp_path):
    """The C column reader gives the line parser's bits on the real file; files it cannot read
    cleanly (comments, lower-case months, a bad date, a missing field) go to the line parser,
    so the result or the error is the one it always was."""
    from ncp_subsidence.io.products import tenv3

    text = TENV3.read_text()
    fast = tenv3._parse_columns(text)
    slow = tenv3._parse_lines(text, str(TENV3))
    assert fast is not None
    assert fast[0] == slow[0]
    np.testing.assert_array_equal(fast[1], slow[1])
    np.testing.assert_array_equal(fast[2], slow[2])
    assert fast[3].tobytes() == slow[3].tobytes()
    rows = text.splitlines()
    # a month in lower case: the same days as the line parser
    lower = "\n".join([rows[1], rows[2].replace("95MAY20", "95may20")]) + "\n"
    np.testing.assert_array_equal(tenv3._parse_columns(lower)[1], tenv3._parse_lines(lower, "x")[1])
    for bad in (
        "# a comment\n" + "\n".join(rows[1:4]) + "\n",
        "\n".join([rows[1], rows[2].replace("95MAY20", "95MAY32")]) + "\n",
        "\n".join([rows[1], rows[2].replace("95MAY20", "95XYZ20")]) + "\n",
        "\n".join([rows[1], " ".join(rows[2].split()[:22])]) + "\n",
        "\n".join([rows[1], rows[2].replace(" 0.721752 ", " nan ")]) + "\n",
    ):
        assert tenv3._parse_columns(bad) is None
    # the line parser keeps naming the malformed line
    bad_day = tmp_path / "day.tenv3"
    bad_day.write_text("\n".join([rows[0], rows[1], rows[2].replace("95MAY20", "95MAY32")]) + "\n")
    with pytest.raises(DataError, match="line 3 does not parse"):
        read_tenv3(str(bad_day))
