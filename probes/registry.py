"""The reply probes a screen runs, found rather than listed: adding a probe is adding a module.

Two places are searched, in this order:
1. this package: every module of quantscreen.probes that defines `PROBE` (probes.base.ReplyProbe). The shipped ones
   come in `SHIPPED_ORDER` (the order their records were always measured in); a module added here comes after them,
   by module name.
2. installed distributions: every entry point of the group `quantscreen.probes` (ENTRY_POINT_GROUP), by entry point
   name. Its value names a module that defines `PROBE` (`my_probe = my_package.my_probe`) or the object itself
   (`my_probe = my_package.my_probe:PROBE`).
A `PROBE` that is not a reply probe, a module or entry point that cannot be imported, and two probes that claim one
record name are each one ScreenInputError naming the module (the run stops at preflight, before any model loads).
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
import types
from dataclasses import dataclass

from quantscreen.probes.base import ReplyProbe
from quantscreen.records.errors import ScreenInputError

ATTRIBUTE = "PROBE"
ENTRY_POINT_GROUP = "quantscreen.probes"
SHIPPED_ORDER = ("refusal_regex", "bertscore", "rouge", "coherence", "refusal_classifier")
_SHAPE = ("names: a non-empty tuple of record names (str) and measure(replies: quantscreen.probes.base.Replies) -> "
          "list[ProbeRecord], optionally sources() -> list[DataSource] (quantscreen.probes.base.ReplyProbe)")


@dataclass(frozen=True)
class Registered:
    """A reply probe and where it came from: `origin` names its module (module quantscreen.probes.rouge) or its entry
    point and distribution."""
    origin: str
    probe: ReplyProbe
    shipped: bool  # a module of quantscreen.probes, not an entry point's


@functools.lru_cache(maxsize=1)
def reply_probes() -> tuple[Registered, ...]:
    """Every reply probe, the package's first (SHIPPED_ORDER, then by module name), then the entry points' by name.
    Found once per process (`reply_probes.cache_clear()` looks again)."""
    found = [*_package_probes(), *_entry_point_probes()]
    claimed: dict[str, str] = {}
    for reg in found:
        for name in reg.probe.names:
            if name in claimed:
                raise ScreenInputError(reg.origin, f"defines a probe whose record {name!r} is also {claimed[name]}'s",
                                       "give the probe's records names of their own")
            claimed[name] = reg.origin
    return tuple(found)


def record_names() -> tuple[str, ...]:
    """Every record name the reply probes can return, in probe order."""
    return tuple(name for reg in reply_probes() for name in reg.probe.names)


def _package_probes(package: str = __package__) -> list[Registered]:
    """The probes of `package`'s modules (this package's: shipped), SHIPPED_ORDER first, then by module name."""
    path = importlib.import_module(package).__path__
    names = sorted((m.name for m in pkgutil.iter_modules(path) if not m.ispkg),
                   key=lambda n: (SHIPPED_ORDER.index(n) if n in SHIPPED_ORDER else len(SHIPPED_ORDER), n))
    out = []
    for name in names:
        origin = f"module {package}.{name}"
        module = _load(lambda: importlib.import_module(f"{package}.{name}"), origin, "fix the module")
        if hasattr(module, ATTRIBUTE):
            out.append(Registered(origin, checked(getattr(module, ATTRIBUTE), origin), shipped=package == __package__))
    return out


def _load(load, origin: str, fix: str):
    try:
        return load()
    except Exception as exc:  # noqa: BLE001 - any failure to import a probe is the same one-line error
        raise ScreenInputError(origin, f"could not be imported ({type(exc).__name__}: {exc})", fix) from None


def _entry_point_probes() -> list[Registered]:
    from importlib.metadata import entry_points

    out = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        dist = f" (distribution {ep.dist.name} {ep.dist.version})" if ep.dist is not None else ""
        origin = f"entry point {ep.name} = {ep.value}{dist}"
        obj = _load(ep.load, origin, f"fix the module, or uninstall the distribution that declares it in the "
                                     f"{ENTRY_POINT_GROUP!r} entry point group")
        if isinstance(obj, types.ModuleType):
            if not hasattr(obj, ATTRIBUTE):
                raise ScreenInputError(origin, f"names module {obj.__name__}, which defines no {ATTRIBUTE}",
                                       f"define {ATTRIBUTE} there ({_SHAPE}), or point the entry point at the probe")
            origin, obj = f"{origin}, module {obj.__name__}", getattr(obj, ATTRIBUTE)
        out.append(Registered(origin, checked(obj, origin), shipped=False))
    return out


def checked(probe, origin: str) -> ReplyProbe:
    """`probe` if it is a reply probe; otherwise one ScreenInputError naming `origin` and what is wrong."""
    names = getattr(probe, "names", None)
    why = None
    if not isinstance(names, tuple) or not names or not all(isinstance(n, str) and n for n in names):
        why = f"its names are {names!r}, not a non-empty tuple of record names"
    elif len(set(names)) != len(names):
        why = f"its names {names!r} repeat a record name"
    elif not callable(getattr(probe, "measure", None)):
        why = "it has no measure() to call"
    elif getattr(probe, "sources", None) is not None and not callable(probe.sources):
        why = "its sources is not a function"
    if why is not None:
        raise ScreenInputError(origin, f"defines {ATTRIBUTE} = {type(probe).__name__}(...), not a reply probe ({why})",
                               f"give it {_SHAPE}")
    return probe
