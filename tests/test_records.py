"""``record`` (tidings.core.records) behaves as ``dataclass`` does, class by class:
each shape below is made both ways from one body and compared."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from tidings.core.records import record
from tidings.replication.session import PeerReady
from tidings.wire.messages import Clock, Hello, Note

# -- one body, two decorators (module level, so that pickle finds them) ----------------


def frozen_body() -> type:
    class Frozen:
        """A frozen record."""

        KIND: ClassVar[int] = 7
        TYPE = 3  # a class attribute without an annotation: not a field

        a: int
        b: bytes
        c: str = "x"
        d: tuple[int, ...] = ()
        e: list[int] = field(default_factory=list, compare=False, repr=False)
        f: int = field(default=5, hash=False)

        def total(self) -> int:
            return self.a + len(self.b)

        @property
        def twice(self) -> int:
            return 2 * self.a

    return Frozen


def mutable_body() -> type:
    class Mutable:
        a: int
        seen: set[int] = field(default_factory=set)
        count: int = 0

        def __post_init__(self) -> None:
            self.count += 1

    return Mutable


def own_methods_body() -> type:
    class Own:
        key: bytes
        label: str = ""

        def __repr__(self) -> str:
            return f"<own {self.label}>"

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Own) and other.key == self.key

        def __hash__(self) -> int:
            return hash(self.key)

    return Own


def empty_body() -> type:
    class Empty:
        pass

    return Empty


def single_body() -> type:
    class Single:
        value: int

    return Single


DataFrozen = dataclass(frozen=True, slots=True)(frozen_body())
RecordFrozen = record(frozen_body())
DataMutable = dataclass(slots=True)(mutable_body())
RecordMutable = record(frozen=False)(mutable_body())
DataLoose = dataclass(mutable_body())
RecordLoose = record(frozen=False, slots=False)(mutable_body())
DataNoEq = dataclass(eq=False)(mutable_body())
RecordNoEq = record(frozen=False, eq=False, slots=False)(mutable_body())
DataOwn = dataclass(frozen=True, slots=True)(own_methods_body())
RecordOwn = record(own_methods_body())
DataEmpty = dataclass(frozen=True, slots=True)(empty_body())
RecordEmpty = record(empty_body())
DataSingle = dataclass(frozen=True, slots=True)(single_body())
RecordSingle = record(single_body())
DataFrozenLoose = dataclass(frozen=True)(single_body())
RecordFrozenLoose = record(slots=False)(single_body())
#: Each shape's two classes, named as the module names them (so that pickle finds them).
SHAPES: dict[str, tuple[type, type]] = {
    "Frozen": (DataFrozen, RecordFrozen), "Mutable": (DataMutable, RecordMutable),
    "Loose": (DataLoose, RecordLoose), "NoEq": (DataNoEq, RecordNoEq),
    "Own": (DataOwn, RecordOwn), "Empty": (DataEmpty, RecordEmpty),
    "Single": (DataSingle, RecordSingle), "FrozenLoose": (DataFrozenLoose, RecordFrozenLoose),
}
for shape, pair in SHAPES.items():
    for prefix, made in zip(("Data", "Record"), pair, strict=True):
        made.__qualname__ = made.__name__ = prefix + shape
#: Arguments that make one instance of each shape, and a second that differs.
ARGS: dict[str, tuple[tuple[Any, ...], tuple[Any, ...]]] = {
    "Frozen": ((1, b"ab"), (1, b"ab", "y")),
    "Mutable": ((1,), (2,)),
    "Loose": ((1,), (2,)),
    "NoEq": ((1,), (1,)),
    "Own": ((b"k", "one"), (b"j", "one")),
    "Empty": ((), ()),
    "Single": ((4,), (5,)),
    "FrozenLoose": ((4,), (5,)),
}


def outcome(action: Callable[[], Any]) -> tuple[str, Any]:
    """What an action gives, or the type of what it raises (messages may differ)."""
    try:
        return "ok", action()
    except Exception as exc:  # (the comparison is the point)
        return "raised", type(exc).__name__


def behaviour(cls: type, shape: str) -> dict[str, Any]:
    """Everything observable about one class of a shape, its name left out."""
    first_args, second_args = ARGS[shape]
    one, same, two = cls(*first_args), cls(*first_args), cls(*second_args)
    # A field (a dataclass on 3.11 raises TypeError for another name: see below).
    field_name = (cls.__match_args__ or ("",))[0]

    def renamed(text: str) -> str:
        return text.replace(cls.__name__, shape)

    seen: dict[str, Any] = {
        "repr": renamed(repr(one)),
        "equal": one == same, "differ": one == two, "to-object": one == object(),
        "hashable": outcome(lambda: hash(one) == hash(same)),
        "signature": str(inspect.signature(cls)),
        "match_args": getattr(cls, "__match_args__", None),
        "slots": getattr(cls, "__slots__", None),
        "has_dict": hasattr(one, "__dict__"),
        "set_field": field_name and outcome(lambda: setattr(one, field_name, 9)),
        "del_field": field_name and outcome(lambda: delattr(one, field_name)),
        "copy": outcome(lambda: repr(copy.copy(two)) == repr(two)),
        "deepcopy": outcome(lambda: repr(copy.deepcopy(two)) == repr(two)),
        "pickle": outcome(lambda: repr(pickle.loads(pickle.dumps(two))) == repr(two)),
        "eq-defined": "__eq__" in cls.__dict__, "hash": cls.__dict__.get("__hash__", "-"),
    }
    if seen["hash"] not in (None, "-"):
        seen["hash"] = "set"
    for name in ("count", "total", "twice", "KIND", "TYPE", "c", "d", "f"):
        seen[name] = outcome(lambda name=name: getattr(one, name)
                             if not callable(getattr(one, name)) else getattr(one, name)())
    for name in ("seen", "e"):
        if hasattr(one, name):  # a fresh container per instance
            seen[f"{name}-fresh"] = getattr(one, name) is not getattr(same, name)
    for name in ("c", "count", "f"):
        seen[f"class-{name}"] = outcome(lambda name=name: renamed(repr(getattr(cls, name))))
    return seen


@pytest.mark.parametrize("shape", SHAPES)
def test_a_record_behaves_as_the_dataclass(shape: str) -> None:
    data, made = SHAPES[shape]
    assert made.__name__ == f"Record{shape}" and not dataclasses.is_dataclass(made)
    assert behaviour(made, shape) == behaviour(data, shape)


def test_assigning_to_a_frozen_record_raises_frozen_instance_error() -> None:
    note = Note(3, 1, b"12345678")
    with pytest.raises(dataclasses.FrozenInstanceError):
        note.seq = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del note.seq  # type: ignore[misc]
    # (a dataclass raises TypeError here on 3.11, FrozenInstanceError on 3.12)
    with pytest.raises(dataclasses.FrozenInstanceError):
        note.other = 1  # type: ignore[attr-defined]
    assert note == Note(3, 1, b"12345678") and note != Note(3, 0, b"12345678")
    assert hash(note) == hash(Note(3, 1, b"12345678"))
    assert repr(note) == "Note(seq=3, flags=1, head=b'12345678')"
    assert pickle.loads(pickle.dumps(note)) == note


def test_messages_and_session_types_are_records_with_their_fields() -> None:
    hello = Hello((2, 3, 4), False, b"d" * 32)
    assert hello == Hello((2, 3, 4), False, b"d" * 32) != Hello((2, 3, 4), True, b"d" * 32)
    assert Hello.__match_args__ == tuple(inspect.signature(Hello).parameters)
    assert Clock.__slots__ == Clock.__match_args__
    assert repr(PeerReady(4, relay=False)) == "PeerReady(version=4, relay=False)"
    assert PeerReady.__init__.__annotations__ == {"version": "int", "relay": "bool",
                                                   "return": None}


def test_what_record_does_not_handle_gets_a_real_dataclass() -> None:
    class Base:
        pass

    @record
    class Derived(Base):
        a: int

    assert dataclasses.is_dataclass(Derived)
    assert Derived(1) == Derived(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Derived(1).a = 2  # type: ignore[misc]


def test_a_mutable_record_with_eq_is_not_hashable_and_fields_are_fresh() -> None:
    one, two = RecordMutable(1), RecordMutable(1)
    assert one == two and one.seen is not two.seen and one.count == 1
    with pytest.raises(TypeError):
        hash(one)
    one.a = 5
    assert one != two


def test_init_is_made_on_first_use_and_shows_its_signature_before() -> None:
    """``__init__`` is compiled when first looked up; inspect sees the same signature
    before any instance as after, and as the dataclass's."""
    made = record(frozen_body())
    assert type(made.__dict__["__init__"]).__name__ == "_LazyInit"
    assert str(inspect.signature(made)) == str(inspect.signature(DataFrozen))
    assert inspect.isfunction(made.__dict__["__init__"])  # (now compiled, in place)
    fresh = record(frozen=False)(mutable_body())

    class Sub(fresh):  # type: ignore[valid-type,misc]
        pass

    assert Sub(3).count == 1 and inspect.isfunction(fresh.__dict__["__init__"])


def test_a_record_cannot_be_subclassed() -> None:
    @record
    class Base:
        x: int

    with pytest.raises(TypeError, match="cannot be subclassed"):
        @record
        class Derived(Base):  # (a dataclass here would silently lose x)
            y: int


def test_a_record_that_contains_itself_has_a_repr() -> None:
    @record(frozen=False)
    class Box:
        inside: list[object]

    box = Box([])
    box.inside.append(box)
    assert repr(box).endswith(".Box(inside=[...])")  # (the qualname, as dataclass)


def test_the_types_apps_are_given_stay_dataclasses() -> None:
    # (apps use dataclasses.replace/asdict/fields on what the API returns)
    import tidings
    from tidings.node.options import NodeOptions
    from tidings.storage.base import FeedInfo

    for cls in (tidings.ImportResult, tidings.IngestResult, tidings.VerifyReport, FeedInfo,
                NodeOptions):
        assert dataclasses.is_dataclass(cls), cls
