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
    """A namespace at 10.213.N.2 whose link to this host (10.213.N.1) can be cut.

    N comes from the process id, so parallel test runs do not share names or addresses.
    """

    def __init__(self) -> None:
        n = os.getpid() % 250 + 1
        self.name = f"edge-sdk-test-{os.getpid()}"
        self._host_if, self._remote_if = f"edh{os.getpid()}"[:15], f"edr{os.getpid()}"[:15]
        self.host_ip, self.remote_ip = f"10.213.{n}.1", f"10.213.{n}.2"

    def __enter__(self) -> RemoteHost:
        try:
            for command in [
                f"ip netns add {self.name}",
                f"ip link add {self._host_if} type veth peer name {self._remote_if}",
                f"ip link set {self._remote_if} netns {self.name}",
                f"ip addr add {self.host_ip}/24 dev {self._host_if}",
                f"ip link set {self._host_if} up",
                f"ip -n {self.name} addr add {self.remote_ip}/24 dev {self._remote_if}",
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
