"""`edge-classify run --config FILE` as a real child process, for service tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path


def edge_classify() -> str:
    """The console script of the environment running the tests."""
    local = Path(sys.executable).parent / "edge-classify"
    return str(local) if local.exists() else (shutil.which("edge-classify") or "edge-classify")


class ServiceProcess:
    """Runs the service with a config file and collects its stderr lines.

    Args:
        config: The TOML text, written to `folder`/config.toml.
        folder: Where the config goes.
        env: Extra environment (EDGE_SDK_HOME, NOTIFY_SOCKET, WATCHDOG_USEC, ...).
        args: Extra command-line options.
    """

    def __init__(self, config: str, folder: Path, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.config = folder / "config.toml"
        self.config.write_text(config)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        full_env = {**os.environ, **(env or {})}
        full_env.pop("WATCHDOG_PID", None)
        self.proc = subprocess.Popen(
            [edge_classify(), "run", "--config", str(self.config), *(args or [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=full_env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip())
                self._cond.notify_all()

    def wait_for_line(self, text: str, timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: any(text in line for line in self.lines)
                                       or self.proc.poll() is not None, timeout) and any(
                text in line for line in self.lines)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._reader.join(5)

    @property
    def log(self) -> str:
        with self._cond:
            return "\n".join(self.lines)
