"""Near-duplicate signatures: syndicated edits of one story match, different stories do not."""

import html
import re

import pytest

from pipeline import neardup
from pipeline.config import PACKAGE_DIR
from pipeline.text import html_to_text


def demo_stories() -> dict[str, str]:
    """Plain texts of every item of the bundled demo feeds, by title."""
    stories = {}
    for path in (PACKAGE_DIR / "demo_feeds").iterdir():
        xml = path.read_text()
        for block in re.findall(r"<(?:item|entry)\b.*?</(?:item|entry)>", xml, re.S):
            title = html_to_text(re.search(r"<title[^>]*>(.*?)</title>", block, re.S).group(1))
            body = re.search(r"<(content:encoded|content|description|summary)\b[^>]*>(.*?)</\1>", block, re.S)
            raw = body.group(2).replace("<![CDATA[", "").replace("]]>", "") if body else ""
            text = html_to_text(html.unescape(raw) if "&lt;" in raw else raw)
            stories[f"{path.stem}: {title}"] = text
    return stories


def edits(text: str) -> list[str]:
    paragraphs = [p for p in text.split("\n") if p.strip()]
    return [
        "\n\n".join(paragraphs[:-1]),                                   # trimmed last paragraph
        text + "\n\nReporting by the wire desk. Subscribe to our newsletter for more.",  # boilerplate
        text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2019", "'"),       # quotes
        "\n\n".join(paragraphs[1:]),                                    # dropped lede
        text.replace(" said", " told reporters").replace("Thursday", "Thursday evening"),
    ]


def test_syndicated_variants_of_a_real_story_match(shared_dir):
    title, text = (shared_dir / "seed" / "article.txt").read_text().split("\n", 1)
    original = neardup.signature(title, text)
    for variant in edits(text):
        other = neardup.signature("A different headline over the same wire copy", variant)
        assert neardup.similarity(original, other) >= neardup.THRESHOLD
        assert set(neardup.bands(original)) & set(neardup.bands(other)), "must become a candidate"


def test_demo_flood_story_copies_match_and_other_stories_do_not():
    stories = {k: v for k, v in demo_stories().items() if len(v.split()) >= neardup.MIN_WORDS}
    flood = [k for k in stories if "flood" in stories[k].lower() or "sea walls" in k.lower()]
    assert len(flood) == 3
    signatures = {k: neardup.signature(k, v) for k, v in stories.items()}
    for a in flood:
        for b in flood:
            assert neardup.similarity(signatures[a], signatures[b]) >= neardup.THRESHOLD
    assert len(stories) == 3  # the other demo stories are too short to be signed at all


def test_short_texts_get_no_signature_and_distinct_texts_score_low():
    assert neardup.signature("t", "Too short to compare safely.") is None
    a = neardup.signature("Ferry", " ".join(f"ferry crossing number {i} runs at dawn" for i in range(20)))
    b = neardup.signature("Budget", " ".join(f"council budget line {i} rises by five percent" for i in range(20)))
    assert neardup.similarity(a, b) < 0.1
    assert neardup.best_match(a, [(1, b)]) is None
    assert neardup.best_match(a, [(2, a), (1, a)]) == (1, 1.0)


@pytest.mark.parametrize("sig_bytes", [neardup.NUM_PERM * 4])
def test_signature_size_and_bands_fit_bigint(sig_bytes):
    sig = neardup.signature("t", " ".join(f"word{i}" for i in range(100)))
    assert len(sig) == sig_bytes
    assert all(-(2 ** 63) <= bucket < 2 ** 63 for _, bucket in neardup.bands(sig))
    assert len(neardup.bands(sig)) == neardup.BANDS


def test_signature_is_datasketchs_minhash_of_the_shingles():
    """The vectorized MinHash gives datasketch's hash values exactly: stored signatures are
    compared with new ones."""
    import struct
    import zlib

    from datasketch import MinHash

    template = neardup._template()
    texts = [" ".join(f"word{i % m} story {i * 7 % 13} über ÉTÉ" for i in range(n))
             for n, m in ((12, 5), (40, 40), (400, 17), (3000, 1000))]
    texts += ["İstanbul " * 50, "a b c " * 20]
    for text in texts:
        minhash = MinHash(num_perm=neardup.NUM_PERM, hashfunc=zlib.crc32, permutations=template.permutations,
                          scheme=template.scheme)
        minhash.update_batch(sorted(neardup.shingles(f"title\n{text}")))
        expected = struct.pack(f"<{neardup.NUM_PERM}I", *(int(v) for v in minhash.hashvalues))
        got = neardup.signature("title", text)
        if len(re.findall(r"\w+", text)) < neardup.MIN_WORDS:
            assert got is None
        else:
            assert got == expected
