"""Symbol tables and phone -> id conversion against the fixture tables (README §6: symbols.json).

The table sizes and contents come from the fixture files, so another fixture set of the same format runs unchanged.
"""
from __future__ import annotations

import json

import pytest

from gsv_core.errors import GSVError
from gsv_core.text.symbols import UNKNOWN, SymbolError, normalize_symbol_version, phones_to_ids, symbol_to_id, symbols


@pytest.fixture(scope="module")
def fixture_tables(parity_dir) -> dict[str, list[str]]:
    tables = json.loads((parity_dir / "symbols.json").read_text(encoding="utf-8"))
    assert set(tables) >= {"v1", "v2"}, f"symbols.json has tables {sorted(tables)}"
    return tables


@pytest.fixture(scope="module")
def frontend_cases(parity_dir) -> list[dict]:
    data = json.loads((parity_dir / "text_zh_frontend.json").read_text(encoding="utf-8"))
    return data["sentences"]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_tables_equal_fixture(version, fixture_tables, parity_dir):
    assert symbols(version) == fixture_tables[version]
    sizes = json.loads((parity_dir / "text_zh_frontend.json").read_text(encoding="utf-8")).get("symbol_table_sizes")
    if sizes and version in sizes:
        assert len(symbols(version)) == sizes[version]


def test_v2_table_extends_v1():
    v1, v2 = symbols("v1"), symbols("v2")
    assert v2[: len(v1)] == v1
    assert len(set(v2)) == len(v2), "duplicate symbols in the v2 table"
    assert len(set(v1)) == len(v1), "duplicate symbols in the v1 table"


@pytest.mark.parametrize("alias", ["v2", "v2Pro", "v2ProPlus", "V2", " v2pro ", "v3", "v4"])
def test_later_versions_use_v2_table(alias):
    assert normalize_symbol_version(alias) == "v2"
    assert symbols(alias) == symbols("v2")


@pytest.mark.parametrize("bad", ["", "  ", "x", "vx", "2", "v9x", "v2-pro", None, 2])
def test_bad_version_is_a_user_error(bad):
    with pytest.raises(SymbolError) as info:
        symbols(bad)
    assert isinstance(info.value, GSVError)
    with pytest.raises(GSVError):
        phones_to_ids(["a1"], bad)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_ids_are_indices_and_unknown_is_unk(version):
    table = symbols(version)
    assert phones_to_ids(table, version) == list(range(len(table)))
    unk = table.index(UNKNOWN)
    assert phones_to_ids(["no-such-phone", "", table[0]], version) == [unk, unk, 0]
    assert symbol_to_id(version)[table[-1]] == len(table) - 1


def test_returned_tables_are_copies():
    sentinel = "<not a symbol>"
    table = symbols("v1")
    table.append(sentinel)
    mapping = symbol_to_id("v1")
    mapping[sentinel] = 0
    assert sentinel not in symbols("v1") and sentinel not in symbol_to_id("v1")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_fixture_phone_ids(version, frontend_cases):
    checked = 0
    for case in frontend_cases:
        entry = case.get(version) or {}
        if "phones" not in entry:
            continue
        assert phones_to_ids(entry["phones"], version) == entry["phone_ids"], case["text"]
        checked += 1
    assert checked, f"no {version} cases with phones in the fixture"
