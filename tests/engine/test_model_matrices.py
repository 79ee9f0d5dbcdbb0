"""The scan's quick design matrices equal scikit-learn's public-API ones bit for bit (issue 17).

``token_matrix`` and ``combine_blocks`` skip scikit-learn's and SciPy's per-call checks; a model's
probabilities must not move by one ulp for it, so every array is compared exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from malwaresnipper.engine.features.text import js_tokens, page_tokens, sanitize_html, url_tokens
from malwaresnipper.engine.models import (
    ModelInput,
    combine_blocks,
    featurize,
    combine_blocks_reference,
    load_models,
    numeric_matrix,
    token_matrix,
    token_matrix_reference,
)

JS = "function f(a,b){return a+b}; var x = f(1, 2); document.title = 'x' + x; " * 40
PAGE = "<html><head><title>Sign in</title></head><body><form action='/login.php'><input type=password name=pw>" \
       "</form><a href='#'>Forgot?</a><script>var s=1</script></body></html>"


def _inputs() -> list[ModelInput]:
    rows = [
        ModelInput(js_tokens(JS), {}),
        ModelInput(page_tokens(sanitize_html(PAGE)), {"form_count": 1.0, "input_count": 3.0}),
        ModelInput(url_tokens("https://login.example-bank.test/secure/verify?id=1"), {}),
        ModelInput({}, {}),  # no tokens: a zero row, not a division by zero
        # Many keys in few columns: hash collisions summed by sum_duplicates.
        ModelInput({f"k{i}": 1.0 + (i % 7) for i in range(3000)}, {}),
    ]
    return rows


def _same(a, b) -> None:  # noqa: ANN001 - two csr matrices
    assert type(a) is type(b) and a.shape == b.shape and a.dtype == b.dtype
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.data.view(np.uint64), b.data.view(np.uint64))  # bits, not closeness


@pytest.mark.parametrize("n_features", [2**18, 2**10, 16])
def test_token_matrix_equals_the_public_api_bit_for_bit(n_features: int) -> None:
    inputs = _inputs()
    _same(token_matrix(inputs, n_features=n_features), token_matrix_reference(inputs, n_features=n_features))
    for one in inputs:
        _same(token_matrix([one], n_features=n_features), token_matrix_reference([one], n_features=n_features))
    assert token_matrix([], n_features=n_features).shape == (0, n_features)


def test_combine_blocks_equals_hstack_bit_for_bit() -> None:
    inputs = _inputs()
    keys = ["form_count", "input_count", "missing"]
    tokens = token_matrix(inputs, n_features=2**10)
    dense = numeric_matrix(inputs, keys)
    mean = np.array([0.5, 1.0, 0.0])
    scale = np.array([2.0, 0.5, 1.0])
    _same(combine_blocks(tokens, dense, mean, scale, numeric_weight=0.3),
          combine_blocks_reference(tokens, dense, mean, scale, numeric_weight=0.3))
    # A NaN (zero scale over a zero) is an entry in both; zeros are dropped in both.
    nan_scale = np.array([2.0, 0.5, 0.0])
    with np.errstate(invalid="ignore", divide="ignore"):
        quick = combine_blocks(tokens, dense, mean, nan_scale, numeric_weight=0.3)
        slow = combine_blocks_reference(tokens, dense, mean, nan_scale, numeric_weight=0.3)
    assert quick.shape == slow.shape and np.array_equal(quick.indices, slow.indices)
    assert np.array_equal(quick.data, slow.data, equal_nan=True)
    assert any(math.isnan(v) for v in quick.data)


def test_shipped_models_give_the_same_probabilities_as_through_the_public_api() -> None:
    loaded = load_models()
    cases = {"js": [JS, JS[:300]], "html": [PAGE], "url": ["https://example.org/a/b?c=d"]}
    for kind, raws in cases.items():
        bundle = loaded.bundles.get(kind)
        if bundle is None:
            pytest.fail(f"the shipped {kind} model did not load: {loaded.problems.get(kind)}")
        inputs = [featurize(kind, r, numeric_keys=bundle.numeric_keys) for r in raws]
        quick = bundle.predict(inputs)
        tokens = token_matrix_reference(inputs, n_features=bundle.n_features)
        dense = numeric_matrix(inputs, bundle.numeric_keys) if bundle.numeric_keys else None
        X = combine_blocks_reference(tokens, dense, bundle.numeric_mean, bundle.numeric_scale,
                                     numeric_weight=bundle.numeric_weight)
        assert quick == bundle.predict_matrix(X)
        assert np.allclose(quick, bundle.estimator.predict_proba(X)[:, 1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("text", ["", "a", "abc", "abcd", "ab\ncd\r\n", "<DIV>\u00e9\U0001f600 X</DIV>" * 50,
                                  "\ud800ab\x00cd"])
def test_char_grams_are_the_regex_definitions(text: str) -> None:
    from malwaresnipper.engine.features.text import _CHAR4, _char4

    assert _char4(text) == _CHAR4.findall(text)
