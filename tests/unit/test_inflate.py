"""A compressed body read in bounded steps (pipeline.fetch._inflate): every form servers
send, and a body the connection cut short told from one whose trailer a server left out."""

import gzip
import zlib

import pytest

from pipeline.fetch import _inflate

DOC = b"<rss><channel>" + b"<item><title>story</title></item>" * 200 + b"</channel></rss>"


def inflated(data: bytes, framed: bool = True, step: int = 7) -> bytes:
    """`data` as network reads of `step` bytes (a server dripping its answer)."""
    reads = [data[i:i + step] for i in range(0, len(data), step)]
    return b"".join(_inflate(reads, lambda: 1 << 20, framed))


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize("step", [1, 2, 7, 1 << 16])
@pytest.mark.parametrize("packed", [gzip.compress(DOC), zlib.compress(DOC), raw_deflate(DOC),
                                    gzip.compress(DOC[:100]) + gzip.compress(DOC[100:]) + b"\0\0"],
                         ids=["gzip", "zlib", "raw deflate", "two gzip members, padded"])
def test_every_form_reads_whole_in_any_read_size(packed, step):
    assert inflated(packed, step=step) == DOC


def test_a_stream_cut_short_is_an_error_unless_the_response_was_framed():
    cut = gzip.compress(DOC)[:-40]  # the connection closed mid-body: no Content-Length said so
    with pytest.raises(zlib.error, match="ended before its end"):
        inflated(cut, framed=False)
    # framed (Content-Length or chunks, checked by the transport): only the trailer is missing
    no_trailer = gzip.compress(DOC)[:-8]
    assert inflated(no_trailer, framed=True) == DOC


def test_what_follows_a_member_must_be_another_member():
    with pytest.raises(zlib.error):
        inflated(gzip.compress(DOC) + b"<html>trailing junk</html>")
