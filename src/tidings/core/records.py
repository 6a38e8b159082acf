"""``record``: a dataclass decorator that costs a process a small part as much to apply.

On Python 3.11, ``@dataclass(frozen=True, slots=True)`` compiles six functions
from source for each class: about 1.1 ms a class, some 0.1 s of every start of
``tidings sync`` for the ~90 classes it loads. ``record`` compiles ``__init__``
(whose speed matters: some classes are made per entry) when it is first looked
up, ``__eq__`` and ``__hash__`` when first called, and makes the others from
closures over the class's field names: about 0.07 ms a class, and ~0.15 ms
more for each compiled method a process uses.

What a class gets is what ``dataclass`` would give it, for what this project
uses: the same ``__init__`` signature (defaults, ``field(default_factory=...)``,
``__post_init__``), ``__repr__`` (``Name(a=1, b=2)``), ``__eq__`` and
``__hash__`` over the same fields (``field(repr=, compare=, hash=)`` honoured),
``__match_args__``, ``__slots__``, :class:`dataclasses.FrozenInstanceError` on
assignment to a frozen one, pickling and copying. A method the class defines
itself is kept, as ``dataclass`` keeps it. Unlike a dataclass, a record has no
``__dataclass_fields__``: ``dataclasses.fields``/``replace``/``asdict`` do not
take it (use a dataclass where those are wanted). Anything this does not handle
(a base class other than ``object``, ``InitVar``, ``KW_ONLY``, ``init=False``
fields, ``__slots__`` of its own, ``order``...) gets a real dataclass, so
``record`` is never wrong, only sometimes no faster. A record cannot be
subclassed (``TypeError``): make the base a dataclass.

tests/test_records.py checks each behaviour against ``dataclass`` side by side.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T", bound=type)

#: A record's field names, on its class: what marks it as one.
_MARK = "__record_fields__"

#: What the generated ``__init__`` reads from its closure (names no field takes).
_SET = "__record_set"
_MISSING = "__record_missing"


class _Factory:
    """The default an ``__init__`` shows for a field made by its factory (as dataclass)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


class _Plan:
    """The fields of one class, read from its annotations and class attributes."""

    __slots__ = ("compare_names", "defaults", "factories", "hash_names", "names", "repr_names",
                 "types")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.types: dict[str, Any] = {}
        self.defaults: dict[str, Any] = {}
        self.factories: dict[str, Callable[[], Any]] = {}
        self.repr_names: list[str] = []
        self.compare_names: list[str] = []
        self.hash_names: list[str] = []


def _plan(cls: type) -> _Plan | None:
    """The fields, or None where ``record`` leaves the class to ``dataclass``."""
    if cls.__bases__ != (object,) or "__slots__" in cls.__dict__:
        return None
    plan = _Plan()
    # (not inspect.get_annotations: importing inspect costs a start ~10 ms)
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        text = annotation if isinstance(annotation, str) else repr(annotation)
        if "ClassVar" in text:
            continue  # a class attribute, not a field (as dataclass reads it)
        if "InitVar" in text or "KW_ONLY" in text:
            return None
        compare = hash_ = shown = True
        value = cls.__dict__.get(name, dataclasses.MISSING)
        if isinstance(value, dataclasses.Field):
            if not value.init or value.kw_only is True or value.metadata:
                return None
            shown, compare = value.repr, value.compare
            hash_ = compare if value.hash is None else value.hash
            if value.default_factory is not dataclasses.MISSING:
                plan.factories[name] = value.default_factory
            elif value.default is not dataclasses.MISSING:
                plan.defaults[name] = value.default
        elif value is not dataclasses.MISSING:
            if value.__class__.__hash__ is None:  # list, dict, set: dataclass refuses them
                return None
            plan.defaults[name] = value
        plan.names.append(name)
        plan.types[name] = annotation
        if shown:
            plan.repr_names.append(name)
        if compare:
            plan.compare_names.append(name)
        if hash_:
            plan.hash_names.append(name)
    return plan


def _values(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """``self -> (self.a, self.b, ...)``: attrgetter, but a tuple for one name or none."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        one = attrgetter(names[0])
        return lambda self: (one(self),)
    return lambda self: ()


def _init(cls: type, plan: _Plan, frozen: bool, slotted: type | None) -> Callable[..., None]:
    """``__init__``, compiled as dataclass writes it: the one method whose speed counts.

    A frozen class sets its fields past its ``__setattr__``: through the slots'
    own descriptors when ``slotted`` (the class made with them), which is about
    twice as fast as ``object.__setattr__`` (0.3 against 0.5 us for three fields).
    """
    env: dict[str, Any] = {_SET: object.__setattr__, _MISSING: _FACTORY}
    params, body = [], []
    for name in plan.names:
        value = name
        if name in plan.factories:
            env[f"__record_f_{name}"] = plan.factories[name]
            params.append(f"{name}={_MISSING}")
            value = f"__record_f_{name}() if {name} is {_MISSING} else {name}"
        elif name in plan.defaults:
            env[f"__record_d_{name}"] = plan.defaults[name]
            params.append(f"{name}=__record_d_{name}")
        else:
            params.append(name)
        if not frozen:
            body.append(f"self.{name} = {value}")
        elif slotted is not None:
            env[f"__record_s_{name}"] = slotted.__dict__[name].__set__
            body.append(f"__record_s_{name}(self, {value})")
        else:
            body.append(f"{_SET}(self, {name!r}, {value})")
    if "__post_init__" in cls.__dict__:
        body.append("self.__post_init__()")
    source = (f"def __make(*, {', '.join(env)}):\n"
              f" def __init__(self, {', '.join(params)}) -> None:\n"
              f"  {'; '.join(body) or 'pass'}\n"
              " return __init__\n")
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<record {cls.__qualname__}>", "exec"), namespace)
    init: Callable[..., None] = namespace["__make"](**env)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = {**plan.types, "return": None}
    return init


def _comparisons(cls: type, plan: _Plan) -> dict[str, Callable[..., Any]]:
    """``__eq__`` and ``__hash__`` over tuples of fields, compiled as dataclass writes them."""
    def fields(of: str, names: list[str]) -> str:
        return f"({''.join(f'{of}.{name}, ' for name in names)})"

    source = (" def __eq__(self, other):\n"
              "  if other.__class__ is self.__class__:\n"
              f"   return {fields('self', plan.compare_names)} == "
              f"{fields('other', plan.compare_names)}\n"
              "  return NotImplemented\n"
              " def __hash__(self):\n"
              f"  return hash({fields('self', plan.hash_names)})\n")
    namespace: dict[str, Any] = {}
    exec(compile(f"def __make():\n{source} return __eq__, __hash__\n",
                 f"<record {cls.__qualname__}>", "exec"), namespace)
    made: dict[str, Callable[..., Any]] = dict(
        zip(("__eq__", "__hash__"), namespace["__make"](), strict=True))
    for method in made.values():
        method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
    return made


def _build(cls: type, frozen: bool, eq: bool, slots: bool) -> type:
    if any(_MARK in base.__dict__ for base in cls.__mro__[1:]):
        # (dataclass reads a base's fields from __dataclass_fields__, which a record
        # has none of: the subclass would silently lose the base's fields)
        raise TypeError(f"{cls.__qualname__} derives from a record, which cannot be "
                        "subclassed: make the base a dataclass")
    plan = _plan(cls)
    own = cls.__dict__
    if plan is None or (frozen and ("__setattr__" in own or "__delattr__" in own)):
        return dataclasses.dataclass(frozen=frozen, eq=eq, slots=slots)(cls)
    names = tuple(plan.names)
    qualname = cls.__qualname__
    methods: dict[str, Any] = {}
    if "__repr__" not in own:
        shown = _values(plan.repr_names)
        labels = tuple(f"{name}=" for name in plan.repr_names)

        @reprlib.recursive_repr()
        def __repr__(self: Any) -> str:
            parts = ", ".join([f"{label}{value!r}"
                               for label, value in zip(labels, shown(self), strict=True)])
            return f"{self.__class__.__qualname__}({parts})"

        methods["__repr__"] = __repr__
    if eq:
        ours = ["__eq__"] if "__eq__" not in own else []
        explicit_hash = own.get("__hash__", dataclasses.MISSING)
        if explicit_hash is dataclasses.MISSING or (explicit_hash is None and "__eq__" in own):
            if frozen:
                ours.append("__hash__")
            else:
                methods["__hash__"] = None  # mutable and compared by value: not hashable

        def install() -> dict[str, Callable[..., Any]]:
            """Compile ``__eq__`` and ``__hash__`` as dataclass writes them, on first use
            (most classes a process loads are never compared), and put them in place."""
            fast = _comparisons(made, plan)
            for name in ours:
                setattr(made, name, fast[name])
            return fast

        if "__eq__" in ours:
            def __eq__(self: Any, other: object) -> bool:
                return install()["__eq__"](self, other)  # type: ignore[no-any-return]

            methods["__eq__"] = __eq__
        if "__hash__" in ours:
            def __hash__(self: Any) -> int:
                return install()["__hash__"](self)  # type: ignore[no-any-return]

            methods["__hash__"] = __hash__
    if frozen:
        field_names = frozenset(names)

        def __setattr__(self: Any, name: str, value: object) -> None:
            if type(self) is made or name in field_names:
                raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
            object.__setattr__(self, name, value)

        def __delattr__(self: Any, name: str) -> None:
            if type(self) is made or name in field_names:
                raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
            object.__delattr__(self, name)

        methods["__setattr__"], methods["__delattr__"] = __setattr__, __delattr__
        if slots and "__getstate__" not in own and "__setstate__" not in own:
            values = _values(list(names))

            def __getstate__(self: Any) -> list[Any]:
                return list(values(self))

            def __setstate__(self: Any, state: list[Any]) -> None:
                for name, value in zip(names, state, strict=True):
                    object.__setattr__(self, name, value)

            methods["__getstate__"], methods["__setstate__"] = __getstate__, __setstate__
    for method in methods.values():
        if method is not None:
            method.__qualname__ = f"{qualname}.{method.__name__}"
    body = dict(own)
    body.update(methods)
    body.setdefault("__match_args__", names)
    body[_MARK] = names
    if body.get("__doc__") is None:
        body["__doc__"] = f"{cls.__name__}({', '.join(names)})"
    if slots:
        body["__slots__"] = names
        for name in names:
            body.pop(name, None)  # defaults live in __init__; a slot replaces the attribute
        body.pop("__dict__", None)
        body.pop("__weakref__", None)
        made = type(cls)(cls.__name__, cls.__bases__, body)
        made.__qualname__ = qualname
    else:
        for key, value in methods.items():
            setattr(cls, key, value)
        for name in names:  # as dataclass: a field() leaves its default, if any
            value = own.get(name)
            if isinstance(value, dataclasses.Field):
                if value.default is dataclasses.MISSING:
                    delattr(cls, name)
                else:
                    setattr(cls, name, value.default)
        if "__match_args__" not in own:
            setattr(cls, "__match_args__", names)  # noqa: B010  (mypy: a type has none)
        setattr(cls, _MARK, names)
        if own.get("__doc__") is None:
            cls.__doc__ = body["__doc__"]
        made = cls
    if "__init__" not in own:
        def install_init() -> Callable[..., None]:
            init = _init(cls, plan, frozen, made if frozen and slots else None)
            made.__init__ = init  # type: ignore[misc]
            return init

        made.__init__ = _LazyInit(install_init)  # type: ignore[misc]
    return made


class _LazyInit:
    """A record's ``__init__`` until first looked up (to make one, or by inspect): then
    compiled and put in its place. Of the ~90 classes a sync loads, most are never made."""

    __slots__ = ("install",)

    def __init__(self, install: Callable[[], Callable[..., None]]) -> None:
        self.install = install

    def __get__(self, instance: object, owner: type | None = None) -> Callable[..., Any]:
        init = self.install()
        return init if instance is None else init.__get__(instance, owner)


@overload
def record(cls: T, /) -> T: ...


@overload
def record(*, frozen: bool = True, eq: bool = True, slots: bool = True) -> Callable[[T], T]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def record(cls: T | None = None, /, *, frozen: bool = True, eq: bool = True,
           slots: bool = True) -> T | Callable[[T], T]:
    """``@record`` is ``@dataclass(frozen=True, slots=True)``; ``@record(frozen=False)``,
    ``@record(eq=False)``, ``@record(slots=False)`` as with dataclass."""

    def wrap(cls: T) -> T:
        made: T = _build(cls, frozen, eq, slots)  # type: ignore[assignment]
        return made

    return wrap if cls is None else wrap(cls)
