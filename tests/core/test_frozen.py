"""`fast_init`: the same objects as the dataclass-generated __init__ makes, still frozen."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from ucity.core.bus import Context, EntitiesChanged, EntityChange
from ucity.core.frozen import fast_init


@dataclass(frozen=True, slots=True)
class Plain:
    a: int
    b: str = "b"
    c: list[int] = field(default_factory=list)
    d: int = -1

    def __post_init__(self) -> None:
        if self.d < 0:
            object.__setattr__(self, "d", self.a * 2)


@fast_init
@dataclass(frozen=True, slots=True)
class Fast:
    a: int
    b: str = "b"
    c: list[int] = field(default_factory=list)
    d: int = -1

    def __post_init__(self) -> None:
        if self.d < 0:
            object.__setattr__(self, "d", self.a * 2)


@pytest.mark.parametrize(("args", "kwargs"), [((1,), {}), ((1, "x"), {}), ((1, "x", [3]), {}), ((1,), {"d": 5}),
                                              ((), {"a": 2, "c": [1], "b": "y"}), ((1, "x", [2], 7), {})])
def test_same_fields_as_the_generated_init(args: tuple, kwargs: dict) -> None:
    plain, fast = Plain(*args, **kwargs), Fast(*args, **kwargs)
    assert dataclasses.astuple(plain) == dataclasses.astuple(fast)


def test_still_frozen_hashable_and_checked() -> None:
    one, two = Fast(1, "x", None), Fast(1, "x", None)  # type: ignore[arg-type]
    assert one == two and hash(one) == hash(two)
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.a = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        Fast()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Fast(1, e=2)  # type: ignore[call-arg]
    assert Fast(1).c is not Fast(1).c  # a default_factory makes a new value per object


def test_refuses_what_it_does_not_handle() -> None:
    @dataclass(slots=True)
    class Unfrozen:
        a: int

    with pytest.raises(TypeError):
        fast_init(Unfrozen)


def test_bus_events() -> None:
    change = EntityChange("t", "e", "update", None, {"id": "e"}, frozenset({"a"}))
    assert (change.tenant, change.entity_id, change.operation, change.before, change.after, change.attrs,
            change.instances) == ("t", "e", "update", None, {"id": "e"}, frozenset({"a"}), ())
    ctx = Context(actor="x")
    assert len(ctx.id) == 32 and ctx.parent_id is None and ctx.child().parent_id == ctx.id
    assert EntitiesChanged(ctx, (change,)).changes == (change,)
