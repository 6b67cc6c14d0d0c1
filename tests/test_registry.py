"""The transform registry, chains and per-item seeding (independent of the transforms' internals)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chexphoto.seeding import derive_rng
from chexphoto.transforms import PRESETS, Chain, get, names, preset

ISSUE_ORDER = [
    "identity", "brightness_up", "brightness_down", "contrast_up", "contrast_down", "random_digital",
    "exposure", "blur", "motion", "rotation", "translation", "tilt", "glare_matte", "glare_glossy", "moire",
]


def test_registry_has_the_fifteen_transforms_in_order():
    assert names() == ISSUE_ORDER


def test_presets_are_the_papers_two_sets():
    assert PRESETS["digital"] == [("random_digital", 1)]
    assert PRESETS["photographic"] == [("glare_matte", 1), ("moire", 1), ("tilt", 1)]
    assert preset("photographic").spec() == [["glare_matte", 1], ["moire", 1], ["tilt", 1]]


def test_bad_names_and_levels_are_refused():
    with pytest.raises(KeyError, match="unknown transform"):
        get("sepia")
    with pytest.raises(ValueError, match="severity level"):
        Chain([("blur", 5)])
    with pytest.raises(ValueError, match="severity level"):
        Chain([("blur", 0)])
    with pytest.raises(KeyError, match="unknown preset"):
        preset("film")


def test_derive_rng_depends_only_on_its_key():
    a = derive_rng(7, [["blur", 1]], "p/1.jpg").random(4)
    b = derive_rng(7, [["blur", 1]], "p/1.jpg").random(4)
    c = derive_rng(7, [["blur", 1]], "p/2.jpg").random(4)
    d = derive_rng(8, [["blur", 1]], "p/1.jpg").random(4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_chain_sample_is_json_and_apply_replays_exactly(rg1_small):
    chain = Chain.from_names("glare_matte,moire,tilt,rotation,blur", 2)
    recorded = chain.sample(derive_rng(0, chain.spec(), "x"), *rg1_small.shape)
    replayed = json.loads(json.dumps(recorded))
    out1 = chain.apply(rg1_small, recorded)
    out2 = chain.apply(rg1_small, replayed)
    assert out1.dtype == np.uint8 and np.array_equal(out1, out2)
    with pytest.raises(ValueError):
        chain.apply(rg1_small, recorded[:-1])
