"""Property tests of the whitelist reader (issue 13): whatever the bytes, the parser and the
signature check raise nothing but the project's own WhitelistError, within a bounded
amount of memory, and no change to a signed list yields other entries than the signed
ones. Examples are derived from a fixed seed (derandomize): the same run every time.

The memory bound is what tracemalloc sees: Python's allocations (the trees built, the
strings), not libxml2's or expat's own; DTDs and entities are refused before either
parser could expand one (test_whitelist.py)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bff.demo.pki import make_whitelist_signer
from bff.demo.whitelist import sign_whitelist, whitelist_xml
from bff.origins.whitelist import Whitelist
from bff.origins.whitelist_file import (
    WhitelistError,
    load_signers,
    parse_whitelist,
    read_whitelist,
)

#: Far above what parsing a few kilobytes needs; an entity expansion would blow it.
MAX_PEAK_BYTES = 16 * 1024 * 1024
PROPERTIES = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,  # no timing asserts: the machine is shared
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def bounded(read: Callable[[bytes], Whitelist], data: bytes) -> Whitelist | None:
    """``read(data)``: a whitelist, or None for a WhitelistError; anything else raised
    fails the test, and so does a memory peak above MAX_PEAK_BYTES."""
    tracemalloc.start()
    try:
        return read(data)
    except WhitelistError:
        return None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < MAX_PEAK_BYTES, peak


NAMES = st.sampled_from(
    [
        "ListeBlancheDRIM-M",
        "DateDeGeneration",
        "ListeDomaines",
        "Domaine",
        "Identifiant",
        "db",
        "vi",
        "DNCertificatOperateur",
        "ds:Signature",
        "x",
    ]
)
TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "db1.localhost",
            "*.localhost",
            "CN=db1.localhost,O=DRIMbox viewer tests,C=FR",
            "CN=\\",
            "&a;",
            "&#0;",
            "&#x110000;",
            "<![CDATA[x]]>",
            "<!-- c -->",
            "<?pi x?>",
            "]]>",
        ]
    ),
)


def _element(children: Any) -> Any:
    return st.tuples(NAMES, st.sampled_from(["", ' versionFormat="1.0.0"', " a='&b;'"]), children)


def _render(node: Any) -> str:
    if isinstance(node, str):
        return node
    name, attributes, children = node
    return f"<{name}{attributes}>{''.join(_render(c) for c in children)}</{name}>"


XML_TREES = st.recursive(TEXT, lambda inner: _element(st.lists(inner, max_size=4)), max_leaves=30)
PROLOGUES = st.sampled_from(
    [
        "",
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<?xml version="1.0" encoding="latin-1"?>',
        '<!DOCTYPE x [<!ENTITY b "bbbbbbbbbb">]>',
        '<!DOCTYPE x SYSTEM "file:///etc/passwd">',
        "\ufeff",
    ]
)


@PROPERTIES
@given(st.binary(max_size=2048))
def test_any_bytes(data: bytes) -> None:
    bounded(parse_whitelist, data)


@PROPERTIES
@given(PROLOGUES, _element(st.lists(XML_TREES, max_size=4)))
def test_any_whitelist_like_xml(prologue: str, tree: Any) -> None:
    data = (prologue + _render(tree)).encode("utf-8", "surrogatepass")
    parsed = bounded(parse_whitelist, data)
    if parsed is not None:
        assert all(e.db and e.identifiant and e.dn_certificat_operateur for e in parsed.entries)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[x509.Certificate]]:
    signer = make_whitelist_signer(Path(tmp_path_factory.mktemp("signer")))
    data = sign_whitelist(whitelist_xml(["db1.localhost", "localhost"]), signer)
    return data, list(load_signers(signer.cert))


@PROPERTIES
@given(st.data())
def test_a_changed_signed_list_says_nothing_else(
    signed: tuple[bytes, list[x509.Certificate]], data: st.DataObject
) -> None:
    original, signers = signed
    expected = read_whitelist(original, signers).entries
    start = data.draw(st.integers(0, len(original) - 1))
    end = data.draw(st.integers(start, min(len(original), start + 8)))
    replacement = data.draw(
        st.one_of(st.binary(max_size=8), st.sampled_from([b"", b" ", b"x", b"<a/>", b"&"]))
    )
    changed = original[:start] + replacement + original[end:]
    verified = bounded(lambda d: read_whitelist(d, signers), changed)
    if verified is not None:
        assert verified.entries == expected


@PROPERTIES
@given(PROLOGUES, _element(st.lists(XML_TREES, max_size=4)))
def test_the_signature_check_of_any_xml(
    signed: tuple[bytes, list[x509.Certificate]], prologue: str, tree: Any
) -> None:
    _, signers = signed
    data = (prologue + _render(tree)).encode("utf-8", "surrogatepass")
    assert bounded(lambda d: read_whitelist(d, signers), data) is None
