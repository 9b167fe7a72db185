"""Word count over text in Arrow chunks: the counts and record counts of str.split() per line, on ASCII,
non-ASCII (read record by record from the first chunk Arrow declines), a byte-order mark, CRLF, separators
Python takes for whitespace; and worker kills leave the result byte-identical."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from datajob_testenv.localjobs import corpus, manifest, markers
from datajob_worker.cli import main as datajob


def _reference(directory: Path) -> tuple[Counter[str], int]:
    counts: Counter[str] = Counter()
    lines = 0
    for path in sorted(directory.glob("*.txt")):
        for line in path.read_bytes().removeprefix(b"\xef\xbb\xbf").split(b"\n"):
            counts.update(line.decode().split())
        text = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
        lines += text.count(b"\n") + (1 if text and not text.endswith(b"\n") else 0)
    return counts, lines


def _result(output: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in (output / "result").read_text().splitlines():
        word, _, count = line.rpartition("\t")
        counts[word] = int(count)
    return counts


def test_word_count_in_chunks_counts_what_split_per_line_counts_on_awkward_text(tmp_path: Path) -> None:
    data = tmp_path / "data"
    corpus(data, files=3, lines=2000)
    (data / "bom.txt").write_bytes(b"\xef\xbb\xbfstart here\r\nand\tthere\x0bvt\x0cff\r\n\n  lead trail  ")
    (data / "unicode.txt").write_text(
        "plain ascii first\n" * 500 + "café crème\u2003em-space\n" + "tail words\n" * 500
    )
    (data / "separators.txt").write_bytes(b"one\x1ctwo\x1dthree\n" * 10)
    path = manifest(
        tmp_path,
        "out",
        workers=2,
        input={"uris": ["data/*.txt"], "partitioning": {"mode": "size", "targetShardSize": "8Ki"}},
    )
    assert datajob(["run", str(path)]) == 0
    counts, lines = _reference(data)
    assert _result(tmp_path / "out") == counts
    assert sum(m["records"] for m in markers(tmp_path / "out")) == lines


def test_word_count_in_chunks_survives_worker_kills_byte_identical(tmp_path: Path) -> None:
    corpus(tmp_path / "data", files=6, lines=3000)
    assert datajob(["run", str(manifest(tmp_path, "ref"))]) == 0
    slow = manifest(
        tmp_path, "chaos", processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.0003"}}
    )
    assert datajob(["run", str(slow), "--kill-every", "0.8", "--seed", "11"]) == 0
    assert [m for m in markers(tmp_path / "chaos") if m["attempt"] > 1], "no failure was injected"
    assert (tmp_path / "chaos" / "result").read_bytes() == (tmp_path / "ref" / "result").read_bytes()
    done = json.loads((tmp_path / "chaos" / "_SUCCESS").read_text())
    assert done["records"] == 6 * 3000
