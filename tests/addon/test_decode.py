"""Body decoding: content-encodings with a bomb guard, charsets in the documented order, sniffing."""

from __future__ import annotations

import gzip
import os
import zlib

import brotli
import pytest

from malwaresnipper.addon.decode import (
    BodyTooLarge,
    decode_content,
    decode_text,
    sniff,
)
from malwaresnipper.addon.responses import decode_body
from malwaresnipper.addon.scanplan import plan_scan

PAGE = ("<!DOCTYPE html><html><head><title>Olá</title></head><body>" + "x" * 5000 + "</body></html>").encode()


@pytest.mark.parametrize(
    "encoding, encode",
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda d: zlib.compress(d)[2:-4]),  # raw deflate, as some servers send
        ("br", brotli.compress),
        ("identity", lambda d: d),
        ("gzip, br", lambda d: brotli.compress(gzip.compress(d))),
    ],
)
def test_every_encoding_round_trips(encoding, encode):
    decoded = decode_content(encode(PAGE), encoding, 1_000_000)
    assert decoded.data == PAGE and decoded.error is None


def test_zstd_when_available():
    zstandard = pytest.importorskip("zstandard", reason="zstd support is optional")
    assert decode_content(zstandard.ZstdCompressor().compress(PAGE), "zstd", 1_000_000).data == PAGE


@pytest.mark.parametrize("encoding, encode", [("gzip", gzip.compress), ("br", brotli.compress), ("deflate", zlib.compress)])
def test_decompression_bomb_is_refused_without_inflating_it(encoding, encode):
    bomb = encode(b"\0" * (64 * 1024 * 1024))
    assert len(bomb) < 100_000
    with pytest.raises(BodyTooLarge):
        decode_content(bomb, encoding, 1_000_000)


def test_corrupt_bodies_yield_the_prefix_that_decoded_and_say_why():
    # Chromium renders what decodes before the error, so that prefix is what must be scanned
    big = PAGE + os.urandom(30_000).hex().encode()  # incompressible: the cut falls past the head
    for encoding, encode in (("gzip", gzip.compress), ("br", brotli.compress), ("deflate", zlib.compress)):
        whole = encode(big)
        cut = decode_content(whole[: len(whole) * 2 // 3] + b"\x00garbage" * 20, encoding, 10_000_000)
        assert cut.error and encoding in cut.error
        # the head (where a payload would sit) is there, whatever the garbage decoded into
        assert len(os.path.commonprefix([cut.data, big])) > len(PAGE), encoding
    nothing = decode_content(b"not gzip at all", "gzip", 1000)
    assert nothing.data == b"" and "gzip" in nothing.error


@pytest.mark.parametrize("seed", range(20))
def test_garbage_inside_the_first_chunk_still_yields_the_prefix(seed):
    """zlib drops everything a call decoded when that call meets corrupt data: a body whose
    corruption falls in the first 16 KB piece once decoded to nothing (flaky with random data)."""
    import random

    big = PAGE + random.Random(seed).randbytes(20_000).hex().encode()
    for encoding, encode in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        whole = encode(big)
        cut = decode_content(whole[: len(whole) // 2] + b"\0garbage" * 50, encoding, 10_000_000)
        assert cut.error and cut.data.startswith(PAGE), (encoding, len(cut.data))


@pytest.mark.parametrize("header", ["x-foo", "identity,foo", "identity", "compress", "gzip, x-foo", "gzip,", "gzip, identity"])
def test_a_coding_the_browser_does_not_know_means_the_raw_bytes(header):
    # Chromium decodes only when every token is gzip/x-gzip/deflate/br/zstd (else: raw bytes)
    raw = gzip.compress(PAGE) if header.startswith("gzip") else PAGE
    decoded = decode_content(raw, header, 1_000_000)
    assert decoded.data == raw and decoded.error is None
    # several Content-Encoding headers are one list, as they are to the browser
    assert decode_content(gzip.compress(PAGE), ["gzip", "x-foo"], 1_000_000).data == gzip.compress(PAGE)
    assert decode_content(gzip.compress(gzip.compress(PAGE)), ["gzip", "GZIP"], 1_000_000).data == PAGE


def test_charset_order_header_bom_meta_fallback():
    cyrillic = "<meta charset='windows-1251'><p>Привет</p>"
    assert decode_text(cyrillic.encode("cp1251"), None).text == cyrillic
    assert decode_text(cyrillic.encode("cp1251"), None).charset_source == "meta"
    # the header wins over the meta tag (ISO-8859-1 is windows-1252 on the web)
    latin = "<meta charset='utf-8'>café"
    decoded = decode_text(latin.encode("latin-1"), "ISO-8859-1")
    assert decoded.text == latin and decoded.charset_source == "header" and decoded.charset == "windows-1252"
    # a BOM wins over the meta tag and over the header
    decoded = decode_text("\ufeff<meta charset=windows-1251>é".encode("utf-8"), None)
    assert decoded.text == "<meta charset=windows-1251>é" and decoded.charset_source == "bom"
    assert decode_text("hé".encode("utf-16"), None).text == "hé"
    # nothing declared: UTF-8 when valid, else windows-1252 (both keep every ASCII byte)
    assert decode_text("ok é".encode(), None).charset == "utf-8"
    decoded = decode_text(b"ok \xe9", None)
    assert decoded.charset_source == "fallback" and decoded.text == "ok é"
    assert decode_text(b"ok \xff", None, kind="js").text == "ok \ufffd"


def test_sniffing_when_type_is_missing_or_generic():
    def kind(content_types, body, *, path="/", dest=""):
        plan = plan_scan(content_types, fetch_dest=dest)
        decoded = decode_body(body, plan=plan, content_encoding=None, url_path=path, cap=1_000_000)
        return decoded.kind if decoded else None

    assert kind(["text/html; charset=utf-8"], b"x") == "html"
    assert kind(["application/javascript"], b"x") == "js"
    assert kind([], b"  <!doctype html><p>") == "html"
    assert kind(["text/plain"], b"<html><body>") == "html"
    assert kind(["application/octet-stream"], b"var a = 1;") == "js"
    assert kind(["text/plain"], b"hello world", path="/x.js") == "js"
    assert kind(["text/plain"], b"hello world", dest="script") == "js"
    assert kind(["text/plain"], b"hello world") is None
    assert kind(["application/octet-stream"], b"\x89PNG\r\n\x1a\n....") is None
    assert kind(["image/png"], b"<html>") is None
    assert kind(["application/json"], b"{}") is None
    assert kind([], b"<?xml version='1.0'?><svg/>", dest="document") == "html"
    assert kind([], b"var a = 1;", dest="document") is None  # a navigation never runs a body as a script
    assert sniff(b"MZ\x90\x00", url_path="/setup.js") is None
