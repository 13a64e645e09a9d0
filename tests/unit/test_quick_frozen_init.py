"""quick_frozen_init replaces the dataclass __init__ of Trade and FrameResult: same signature, same
objects (every field, defaults, __post_init__'s check) as the dataclass decorator alone makes, and
the instances stay frozen."""

from __future__ import annotations

import dataclasses
import inspect
from decimal import Decimal
from typing import Any

import pytest

from cryptopipe.coinbase.frames import FrameResult
from cryptopipe.contracts import ContractError, Trade, quick_frozen_init


def plain_dataclass(cls: type) -> type:
    """The same fields and __post_init__ as the dataclass decorator alone makes them."""
    specs = [
        (f.name, f.type, dataclasses.field(default=f.default))
        if f.default is not dataclasses.MISSING
        else (f.name, f.type)
        for f in dataclasses.fields(cls)
    ]
    namespace = {"__post_init__": cls.__post_init__} if hasattr(cls, "__post_init__") else {}
    return dataclasses.make_dataclass(cls.__name__, specs, frozen=True, slots=True, namespace=namespace)


def values(obj: object) -> tuple[Any, ...]:
    return tuple(getattr(obj, f.name) for f in dataclasses.fields(obj))  # type: ignore[arg-type]


P, S = Decimal("63514.6"), Decimal("0.2")
TRADE_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("BTC-USD", 1, P, S, "sell", 10, 20, "exchange"), {}),
    (("BTC-USD", 1, P, S, "sell", 10, 20, "exchange", "rest", 7, "other"), {}),
    (("BTC-USD", 1, P, S), {"side": "buy", "event_time_us": 1, "receive_time_us": 2, "feed": "advanced_trade"}),
    (
        (),
        {"product_id": "ETH-USD", "trade_id": 2, "price": P, "size": S, "side": "buy", "event_time_us": 1}
        | {"receive_time_us": 2, "feed": "exchange", "sequence": 9},
    ),
]
FRAME_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("match",), {}),
    (("match",), {"trades": ("t",), "is_snapshot": True}),
    (("x", (), ("tick",), "bad", "server", {"c": ("p",)}, True), {}),
    ((), {"frame_type": "error", "server_error": "no"}),
]


@pytest.mark.parametrize(
    ("cls", "calls"), [(Trade, TRADE_CALLS), (FrameResult, FRAME_CALLS)], ids=["Trade", "FrameResult"]
)
def test_same_objects_as_the_dataclass_init(cls: type, calls: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> None:
    reference = plain_dataclass(cls)
    assert str(inspect.signature(cls)) == str(inspect.signature(reference))
    for args, kwargs in calls:
        obj = cls(*args, **kwargs)
        assert values(obj) == values(reference(*args, **kwargs))
        first_field = dataclasses.fields(cls)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, first_field, "X")


def test_post_init_still_runs() -> None:
    with pytest.raises(ContractError, match="price\\*size"):
        Trade("BTC-USD", 1, Decimal("1000000000"), Decimal("10000"), "sell", 1, 2, "exchange")


def test_missing_and_unknown_arguments_still_raise() -> None:
    with pytest.raises(TypeError):
        Trade("BTC-USD", 1, P, S, "sell", 1, 2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        FrameResult("match", colour="red")  # type: ignore[call-arg]


def test_refuses_what_it_does_not_handle() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class WithFactory:
        items: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="not a plain field"):
        quick_frozen_init(WithFactory)
