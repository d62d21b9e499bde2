"""JSON lines: one `Prediction.to_dict()` object per line, to stdout or a file."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, TextIO

from edge_sdk.errors import SinkError
from edge_sdk.protocols import Closing
from edge_sdk.types import Frame, Prediction

log = logging.getLogger(__name__)


class JsonlSink(Closing):
    """Writes each prediction as one JSON object per line, flushed at once.

    Lossless: the pipeline keeps its predictions in order and never drops one silently. Each
    line is flushed so a reader (``tail -f``, a pipe) sees it immediately. If the reader of
    stdout goes away (``edge-classify ... --json | head``), the sink asks the pipeline to stop,
    as command-line tools do on a closed pipe.

    Args:
        path: File to write; None or "-" means standard output.
        append: Add to an existing file instead of replacing it.
        stream: Write to this open text stream instead (not closed by the sink).

    Raises:
        SinkError: the file cannot be opened for writing.
    """

    lossless = True
    wants_frames = False
    name = "jsonl"

    def __init__(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        append: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self._owned = False
        self._pipeline: Any = None
        self.lines = 0
        if stream is not None:
            self._out: TextIO | None = stream
        elif path is None or os.fspath(path) == "-":
            self._out = sys.stdout
        else:
            try:
                self._out = open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise SinkError(
                    f"cannot write JSON lines to {os.fspath(path)}: {exc.strerror}; "
                    "check the folder exists and is writable"
                ) from None
            self._owned = True
        self.path = None if path is None else os.fspath(path)

    def attach(self, pipeline: Any) -> None:
        """Remember the pipeline, to stop it when stdout's reader goes away."""
        self._pipeline = pipeline

    def publish(self, prediction: Prediction, frame: Frame | None) -> None:
        out = self._out
        if out is None:
            return
        try:
            out.write(json.dumps(prediction.to_dict(), separators=(",", ":")) + "\n")
            out.flush()
        except BrokenPipeError:
            log.info("the reader of the JSON lines went away; stopping")
            self._out = None
            if out is sys.stdout:
                _silence_stdout()
            if self._pipeline is not None:
                self._pipeline.request_stop()
            return
        self.lines += 1

    def close(self) -> None:
        out, self._out = self._out, None
        if out is None:
            return
        try:
            if self._owned:
                out.close()
            else:
                out.flush()
        except (BrokenPipeError, ValueError):  # the stream was closed under us
            pass


def _silence_stdout() -> None:
    """Point stdout's descriptor at /dev/null, so the interpreter's last flush at exit does not
    fail again on the closed pipe (the usual remedy for EPIPE on stdout)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout has no descriptor (captured): nothing to silence
        pass
