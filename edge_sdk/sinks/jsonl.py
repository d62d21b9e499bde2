"""JSON lines: one `Prediction.to_dict()` object per line, to stdout or a file."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from typing import Any, TextIO

from edge_sdk.errors import SinkError
from edge_sdk.sinks.closable import ClosableSink
from edge_sdk.types import Frame, Prediction

log = logging.getLogger(__name__)


class JsonlSink(ClosableSink):
    """Writes each prediction as one JSON object per line, flushed at once.

    Lossless: the pipeline keeps its predictions in order and never drops one silently. Each
    line is flushed so a reader (``tail -f``, a pipe) sees it immediately. If the reader of
    stdout goes away (``edge-classify ... --json | head``), the sink asks the pipeline to stop,
    as command-line tools do on a closed pipe.

    Args:
        path: File to write; None or "-" means standard output.
        append: Add to an existing file instead of replacing it.
        stream: Write to this open text stream instead (not closed by the sink).

    A write that fails (a full disk, ``/dev/full``) raises a `SinkError` naming the file and
    the fix; the pipeline counts and logs it (`Pipeline.sink_failures`) and goes on.

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
        self._pipeline: Any = None
        self._gone = False  # the reader of the stream went away
        self._reopen = False  # set by reopen(), acted on by the next publish
        self.lines = 0
        self._out: TextIO | None = None
        self._file: io.FileIO | None = None
        if stream is not None:
            self._out = stream
        elif path is None or os.fspath(path) == "-":
            self._out = sys.stdout
        else:
            try:
                # Unbuffered: a line that cannot be written (a full disk) fails whole at once,
                # instead of staying in a buffer that grows and fails again with every later line.
                self._file = open(path, "ab" if append else "wb", buffering=0)  # noqa: SIM115
            except OSError as exc:
                raise SinkError(
                    f"cannot write JSON lines to {os.fspath(path)}: {exc.strerror}; "
                    "check the folder exists and is writable"
                ) from None
        self.path = None if path is None else os.fspath(path)
        self._where = (str(self.path) if self._file is not None
                       else "standard output" if stream is None else "its stream")

    def reopen(self) -> None:
        """Write the next lines to a freshly opened file at `path` (appended to, or created).

        For log rotation: once the old file has been renamed, the service's SIGHUP handler
        calls this, and the line after it goes to a new file under the old name. Safe to call
        from a signal handler; the reopen itself happens in the next `publish`. A stream is
        left as it is.
        """
        if self.path is not None:
            self._reopen = True

    def attach(self, pipeline: Any) -> None:
        """Remember the pipeline, to stop it when stdout's reader goes away."""
        self._pipeline = pipeline

    def _cannot_write(self, exc: OSError) -> SinkError:
        return SinkError(f"cannot write JSON lines to {self._where}: {exc.strerror or exc}; free space "
                         "on its disk or write them elsewhere")

    def publish(self, prediction: Prediction, frame: Frame | None) -> None:
        """Write one line.

        Raises:
            SinkError: the sink is closed, or the line cannot be written (the message says
                why and what to do).
        """
        self._refuse_if_closed(f"the JSON lines sink writing to {self._where}")
        if self._gone:  # the pipeline was asked to stop
            return
        line = json.dumps(prediction.to_dict(), separators=(",", ":")) + "\n"
        if self._reopen and self.path is not None:
            self._reopen = False
            try:
                fresh = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept until close
            except OSError as exc:
                # Not raised: this line, and the next, still have the old file to go to.
                log.error("cannot reopen %s for JSON lines: %s; writing on to the file it had open "
                          "(check the folder is writable, then send SIGHUP again)", self.path,
                          exc.strerror)
            else:
                old, self._file = self._file, fresh
                if old is not None:
                    old.close()
        try:
            if self._file is not None:
                data = memoryview(line.encode())
                while data:
                    data = data[self._file.write(data):]
            else:
                assert self._out is not None
                self._out.write(line)
                self._out.flush()
        except BrokenPipeError:
            log.info("the reader of the JSON lines went away; stopping")
            self._gone = True
            if self._out is sys.stdout:
                _silence_stdout()
            if self._pipeline is not None:
                self._pipeline.request_stop()
            return
        except OSError as exc:
            raise self._cannot_write(exc) from exc
        self.lines += 1

    def close(self) -> None:
        """Close the file (a stream is flushed, not closed).

        Raises:
            SinkError: the stream's last lines cannot be written.
        """
        self._closed = True
        file, self._file = self._file, None
        out, self._out = self._out, None
        try:
            if file is not None:
                file.close()
            elif out is not None and not self._gone:
                out.flush()
        except (BrokenPipeError, ValueError):  # the stream was closed under us
            pass
        except OSError as exc:
            raise self._cannot_write(exc) from exc


def _silence_stdout() -> None:
    """Point stdout's descriptor at /dev/null, so the interpreter's last flush at exit does not
    fail again on the closed pipe (the usual remedy for EPIPE on stdout)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout has no descriptor (captured): nothing to silence
        pass
