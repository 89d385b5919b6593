"""HeadConfig: values checked on construction (errors name the field), lossless to/from dict, build/replace."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from oddeye.core.errors import ConfigError, InputError
from oddeye.core.headconfig import HeadConfig, given, param


@dataclass
class Inner(HeadConfig):
    weight: float = param(0.5, ge=0, le=1)


@dataclass
class Outer(HeadConfig):
    k: int = param(1, ge=1)
    gains: tuple[float, ...] = param(())
    layers: tuple[int, ...] | None = None
    mode: str = param("max", choices=("max", "mean"))
    inner: Inner = param(default_factory=Inner)


def test_round_trip_through_a_plain_dict():
    cfg = Outer(k=3, gains=[1, 2.5], layers=[4, 10], inner={"weight": 0.25})
    assert cfg.gains == (1.0, 2.5) and cfg.layers == (4, 10) and cfg.inner == Inner(0.25)
    doc = cfg.to_dict()
    assert doc == {"k": 3, "gains": [1.0, 2.5], "layers": [4, 10], "mode": "max", "inner": {"weight": 0.25}}
    assert Outer.from_dict(doc) == cfg


@pytest.mark.parametrize("bad, field", [({"k": 0}, "Outer.k"), ({"k": "3"}, "Outer.k"), ({"k": True}, "Outer.k"),
                                        ({"mode": "min"}, "Outer.mode"), ({"gains": [1, "x"]}, r"Outer.gains\[1\]"),
                                        ({"inner": {"weight": 2}}, r"Outer.inner.weight"),
                                        ({"layers": "4"}, "Outer.layers"), ({"nope": 1}, "Outer.nope")])
def test_bad_values_are_refused_naming_the_field(bad, field):
    with pytest.raises(ConfigError, match=rf"^{field}: ") as e:
        Outer.from_dict(bad)
    assert isinstance(e.value, InputError)


def test_old_folders_fill_missing_keys_from_defaults_then_the_class():
    assert Outer.from_dict({"k": 2}, defaults={"k": 9, "mode": "mean"}) == Outer(k=2, mode="mean")


def test_build_applies_overrides_and_refuses_another_config_type():
    assert Outer.build(None, k=4) == Outer(k=4)
    assert Outer.build(Outer(k=2)) == Outer(k=2)
    with pytest.raises(ConfigError, match="expected a Outer, got Inner"):
        Outer.build(Inner())
    with pytest.raises(ConfigError, match="Outer.kk"):
        Outer().replace(kk=1)
    assert given(a=None, b=0, c=False) == {"b": 0, "c": False}


def test_a_config_error_survives_pickling():
    import pickle

    from oddeye.core.errors import ConfigError

    e = pickle.loads(pickle.dumps(ConfigError("PatchCoreConfig.k", "must be >= 1, got 0", "pass k >= 1")))
    assert (e.field, e.message, e.hint) == ("PatchCoreConfig.k", "PatchCoreConfig.k: must be >= 1, got 0", "pass k >= 1")
