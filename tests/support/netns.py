"""A second host for tests: a network namespace joined to this one by a veth link, which a test
can cut the way Wi-Fi drops (no FIN, no reset, no more ACKs), something loopback cannot do.

Needs root (CAP_NET_ADMIN) and iproute2's `ip` (scripts/setup.sh installs it); `missing()` says
why not, for a skip. Import: ``from support.netns import RemoteHost, missing``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from types import TracebackType


def missing() -> str | None:
    """Why no namespace can be made here (a skip reason), or None if one can."""
    if shutil.which("ip") is None:
        return "no `ip` command (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


class RemoteHost:
    """A namespace on a /30 of 10.0.0.0/8 whose link to this host can be cut.

    The /30 is the process id's (Linux ids have at most 22 bits, a /30 in 10/8 takes 22), as
    are the names, so parallel test runs share neither.
    """

    def __init__(self) -> None:
        pid = os.getpid()
        base = f"10.{pid >> 14 & 255}.{pid >> 6 & 255}.{(pid & 63) * 4}"
        prefix, _, last = base.rpartition(".")
        self.name = f"edge-sdk-test-{pid}"
        self._host_if, self._remote_if = f"edh{pid}"[:15], f"edr{pid}"[:15]
        self.host_ip, self.remote_ip = f"{prefix}.{int(last) + 1}", f"{prefix}.{int(last) + 2}"

    def __enter__(self) -> RemoteHost:
        try:
            for command in [
                f"ip netns add {self.name}",
                f"ip link add {self._host_if} type veth peer name {self._remote_if}",
                f"ip link set {self._remote_if} netns {self.name}",
                f"ip addr add {self.host_ip}/30 dev {self._host_if}",
                f"ip link set {self._host_if} up",
                f"ip -n {self.name} addr add {self.remote_ip}/30 dev {self._remote_if}",
                f"ip -n {self.name} link set {self._remote_if} up",
            ]:
                subprocess.run(command.split(), check=True, capture_output=True, timeout=10)
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._remove()

    def popen(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """Run `argv` on the remote host."""
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv])

    def cut(self) -> None:
        """Take the remote end of the link down: its packets stop, in both directions."""
        subprocess.run(["ip", "-n", self.name, "link", "set", self._remote_if, "down"],
                       check=True, capture_output=True, timeout=10)

    def _remove(self) -> None:
        # Deleting one end of a veth pair deletes both.
        subprocess.run(["ip", "link", "del", self._host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)
