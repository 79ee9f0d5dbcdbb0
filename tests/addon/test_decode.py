"""Body decoding: content-encodings with a bomb guard, charsets in the documented order, sniffing."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest

from malwaresnipper.addon.decode import (
    BodyTooLarge,
    DecodeError,
    body_kind,
    decode_content,
    decode_text,
    sniff,
)

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
    assert decode_content(encode(PAGE), encoding, 1_000_000) == PAGE


def test_zstd_when_available():
    zstandard = pytest.importorskip("zstandard", reason="zstd support is optional")
    assert decode_content(zstandard.ZstdCompressor().compress(PAGE), "zstd", 1_000_000) == PAGE


@pytest.mark.parametrize("encoding, encode", [("gzip", gzip.compress), ("br", brotli.compress), ("deflate", zlib.compress)])
def test_decompression_bomb_is_refused_without_inflating_it(encoding, encode):
    bomb = encode(b"\0" * (64 * 1024 * 1024))
    assert len(bomb) < 100_000
    with pytest.raises(BodyTooLarge):
        decode_content(bomb, encoding, 1_000_000)


def test_corrupt_and_unknown_encodings_raise_decode_error():
    with pytest.raises(DecodeError):
        decode_content(b"not gzip at all", "gzip", 1000)
    with pytest.raises(DecodeError):
        decode_content(brotli.compress(PAGE)[:-5], "br", 1_000_000)
    with pytest.raises(DecodeError, match="unsupported"):
        decode_content(b"abc", "compress", 1000)


def test_charset_order_header_bom_meta_fallback():
    cyrillic = "<meta charset='windows-1251'><p>Привет</p>"
    assert decode_text(cyrillic.encode("cp1251"), "text/html").text == cyrillic
    assert decode_text(cyrillic.encode("cp1251"), "text/html").charset_source == "meta"
    # the header wins over the meta tag
    latin = "<meta charset='utf-8'>café"
    decoded = decode_text(latin.encode("latin-1"), "text/html; charset=ISO-8859-1")
    assert decoded.text == latin and decoded.charset_source == "header"
    # a BOM wins over the meta tag
    decoded = decode_text("\ufeff<meta charset=windows-1251>é".encode("utf-8"), "text/html")
    assert decoded.text == "<meta charset=windows-1251>é" and decoded.charset_source == "bom"
    assert decode_text("hé".encode("utf-16"), None).text == "hé"
    # nothing declared: UTF-8, invalid bytes replaced rather than failing
    decoded = decode_text(b"ok \xff", "text/html")
    assert decoded.charset_source == "fallback" and decoded.text == "ok \ufffd"
    # an unknown declared charset falls through to the next rule
    assert decode_text("é".encode(), "text/html; charset=no-such-codec").text == "é"


def test_sniffing_when_type_is_missing_or_generic():
    assert body_kind("text/html; charset=utf-8", b"") == "html"
    assert body_kind("application/javascript", b"") == "js"
    assert body_kind(None, b"  <!doctype html><p>") == "html"
    assert body_kind("text/plain", b"<html><body>") == "html"
    assert body_kind("application/octet-stream", b"var a = 1;") == "js"
    assert body_kind("text/plain", b"hello world", url_path="/x.js") == "js"
    assert body_kind("text/plain", b"hello world", fetch_dest="script") == "js"
    assert body_kind("text/plain", b"hello world") is None
    assert body_kind("application/octet-stream", b"\x89PNG\r\n\x1a\n....") is None
    assert body_kind("image/png", b"<html>") is None
    assert body_kind("application/json", b"{}") is None
    assert sniff(b"MZ\x90\x00", url_path="/setup.js") is None
