"""Word count over whole chunks of text through Arrow counts what str.split() per line counts, or declines
the chunk (non-ASCII, or separators only Python takes for whitespace)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datajob_worker.columnar import columnar_word_count

pytestmark = pytest.mark.unit

ASCII_TEXT = st.text(alphabet=st.sampled_from(list("ab \t\n\r\x0b\x0cxyz.,\x00")), max_size=300)


@settings(max_examples=300, deadline=None)
@given(ASCII_TEXT)
def test_arrow_word_count_equals_python_split_on_ascii_text(text: str) -> None:
    # Small chunks are split in Python, large ones (>= 16 KiB) by Arrow: both count what split() does.
    for chunk in (text, (text + "\n") * (16_384 // (len(text) + 1) + 1)):
        state: dict[str, Counter[str]] = {"counts": Counter()}
        assert columnar_word_count(chunk.encode(), state)
        expected: Counter[str] = Counter()
        for line in chunk.encode().split(b"\n"):
            expected.update(line.decode().split())
        assert state["counts"] == expected


@pytest.mark.parametrize(
    "chunk", ["café au lait\n".encode(), b"a\x1cb\n", b"a\x1fb\n", "a\u2003b\n".encode()]
)
def test_chunks_whose_whitespace_python_reads_differently_are_declined(chunk: bytes) -> None:
    state: dict[str, Counter[str]] = {"counts": Counter()}
    assert not columnar_word_count(chunk, state)
    assert state["counts"] == Counter()
