"""Lazy plugin registry: short names map to ``"module:Class"`` strings, imported only when chosen.

Built-in names are listed here; third-party packages add theirs through the entry-point groups
``edge_sdk.runtimes``, ``edge_sdk.sources`` and ``edge_sdk.sinks``, which are read only for a
name that is not built in (so start-up never scans installed packages).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import numbers
import os
import types
import typing
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from edge_sdk.errors import BackendUnavailable, ConfigError

#: kind -> name -> "module:Class". A kind is also the entry-point group suffix.
BUILTINS: dict[str, dict[str, str]] = {
    "runtimes": {
        "litert": "edge_sdk.runtimes.litert:LiteRTRuntime",
        "onnxruntime": "edge_sdk.runtimes.onnxruntime:OnnxRuntime",
        "opencv": "edge_sdk.runtimes.opencv:OpenCVRuntime",
    },
    # Sources are chosen by URI scheme (edge_sdk.sources.route); "file" and "image" are the
    # video-file and image backends that bare paths and file:// URIs go to.
    "sources": {
        "v4l2": "edge_sdk.sources.v4l2:V4L2Source",
        "file": "edge_sdk.sources.video:VideoFileSource",
        "image": "edge_sdk.sources.images:ImageSource",
        "http": "edge_sdk.sources.mjpeg:MjpegHttpSource",
        "https": "edge_sdk.sources.mjpeg:MjpegHttpSource",
        "rtsp": "edge_sdk.sources.rtsp:RtspSource",
        "rtsps": "edge_sdk.sources.rtsp:RtspSource",
        "gst": "edge_sdk.sources.gstreamer:GStreamerSource",
        "csi": "edge_sdk.sources.csi:CsiSource",
        "test": "edge_sdk.sources.synthetic:SyntheticSource",
    },
    "sinks": {
        "overlay": "edge_sdk.sinks.overlay:OverlaySink",
        "jsonl": "edge_sdk.sinks.jsonl:JsonlSink",
        "video": "edge_sdk.sinks.video:VideoSink",
        "mqtt": "edge_sdk.sinks.mqtt:MqttSink",
        "web": "edge_sdk.web.sink:WebSink",
    },
}

#: Top-level import name -> the pip command that provides it.
PIP_HINTS: dict[str, str] = {
    "ai_edge_litert": "pip install ai-edge-litert",
    "tflite_runtime": "pip install ai-edge-litert",
    "onnxruntime": "pip install 'edge-sdk[onnx]'",
    "onnx": "pip install 'edge-sdk[build]'",
    "tensorflow": "pip install 'edge-sdk[build]'",
    "cv2": "pip install opencv-python",
    "paho": "pip install 'paho-mqtt>=2'",
    "prometheus_client": "pip install prometheus-client",
    "picamera2": "sudo apt install python3-picamera2 (and create the venv with --system-site-packages)",
}


def missing_package(exc: ImportError, what: str) -> BackendUnavailable:
    """Build the `BackendUnavailable` for an ImportError raised while loading `what`."""
    top = (exc.name or "").split(".")[0]
    hint = PIP_HINTS.get(top, f"pip install {top}" if top else "reinstall edge-sdk")
    return BackendUnavailable(f"{what} needs the Python package {top or '?'!s}: {hint}")


def names(kind: str) -> list[str]:
    """Return the built-in and entry-point names of one kind, sorted."""
    found = set(BUILTINS[kind])
    # A broken third-party distribution must not break listing.
    with contextlib.suppress(Exception):
        found.update(ep.name for ep in metadata.entry_points(group=f"edge_sdk.{kind}"))
    return sorted(found)


def resolve(kind: str, name: str) -> type[Any]:
    """Import and return the class registered as `name` of `kind`.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
        BackendUnavailable: the class's module needs a package that is not installed.
    """
    if kind not in BUILTINS:
        raise ValueError(f"unknown plugin kind {kind!r}; expected one of {sorted(BUILTINS)}")
    target = BUILTINS[kind].get(name)
    if target is None:
        eps = [ep for ep in metadata.entry_points(group=f"edge_sdk.{kind}") if ep.name == name]
        if not eps:
            raise ConfigError(
                f"unknown {kind[:-1]} {name!r}; choose one of: {', '.join(names(kind))}"
            )
        target = eps[0].value
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise missing_package(exc, f"the {kind[:-1]} {name!r}") from exc
    cls: type[Any] = getattr(module, attr)
    return cls


def accepted_options(cls: type[Any]) -> list[str]:
    """Return the keyword-only constructor parameters of `cls`: its accepted options."""
    params = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def check_options(cls: type[Any], options: Mapping[str, Any], what: str) -> None:
    """Raise ConfigError if `options` has a key `cls` does not accept, listing the accepted ones."""
    accepted = accepted_options(cls)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{what} has no option {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(accepted) or '(none)'}"
        )


#: The plain value types a parameter annotated with each of these takes. A path may be given
#: as a string (as a TOML file or the command line gives it); numpy scalars count as numbers.
_PLAIN_KINDS: dict[Any, tuple[type, ...]] = {
    str: (str,), int: (numbers.Integral,), float: (numbers.Real,), bool: (bool,),
    Path: (str, os.PathLike), os.PathLike: (str, os.PathLike),
}
_KIND_NAMES: dict[type, str] = {
    str: "a string", numbers.Integral: "an integer", numbers.Real: "a finite number",
    bool: "true or false",
}


def _plain_kinds(hint: Any) -> tuple[type, ...] | None:
    """The value types a parameter annotated `hint` takes; None when the hint says more than
    plain types can (a tuple, a class): then the constructor is the judge."""
    if hint is type(None):
        return (type(None),)  # no TOML value is None; a Python caller's may be
    if typing.get_origin(hint) is typing.Union or isinstance(hint, types.UnionType):
        kinds: tuple[type, ...] = ()
        for member in typing.get_args(hint):
            member_kinds = _plain_kinds(member)
            if member_kinds is None:
                return None
            kinds += member_kinds
        return kinds
    return _PLAIN_KINDS.get(typing.get_origin(hint) or hint)


def option_type_problem(cls: type[Any], options: Mapping[str, Any]) -> tuple[str, Any, str] | None:
    """Find the first option whose value the constructor's annotation rules out (``fps="x"``).

    Only plain annotations are judged (str, int, float, bool, paths, and unions of them);
    for any other, or annotations that do not resolve, the constructor is left to judge.

    Returns:
        (key, value, what the value must be, e.g. "a finite number"), or None if all pass.
    """
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - a plugin's annotations may not resolve here
        return None
    for key, value in options.items():
        kinds = _plain_kinds(hints.get(key, Any))
        if not kinds:
            continue
        # bool is an int subclass, but true is no number here.
        ok = isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
        if ok and isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
            ok = math.isfinite(value)  # NaN and infinity pass every range check after this
        if not ok:
            shown = {k for k in kinds if k in _KIND_NAMES} - (
                {numbers.Integral} if numbers.Real in kinds else set())
            return key, value, " or ".join(sorted(_KIND_NAMES[k] for k in shown))
    return None


def create(kind: str, name: str, *args: Any, **options: Any) -> Any:
    """Resolve `name`, check `options` against its keyword-only parameters, and construct it.

    Raises:
        ConfigError: unknown name, or an option the class does not take.
        TypeError: an option value its annotation rules out (``fps="x"``).
    """
    cls = resolve(kind, name)
    check_options(cls, options, f"the {kind[:-1]} {name!r}")
    problem = option_type_problem(cls, options)
    if problem is not None:
        key, value, kinds = problem
        raise TypeError(f"the {kind[:-1]} {name!r} option {key} must be {kinds}, not {value!r}")
    return cls(*args, **options)
