"""The sandbox's record of what it created, so ``down`` removes exactly that.

Every namespace, host-side link, directory and process is recorded *before* it is made
(write-ahead), and the file is replaced atomically on each change, so after a crash at any
point ``down`` still knows everything that may exist. Read by ``down``/``status``; written
by the supervisor and by ``up``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_STATE_DIR = Path("/run/network-mapper-sandbox")


@dataclass(slots=True)
class SandboxState:
    netns: list[str] = field(default_factory=list)
    etc_netns: list[str] = field(default_factory=list)  # /etc/netns/<name> directories we made
    mount_points: list[str] = field(default_factory=list)  # directories made for pods' volume mounts
    pids: dict[str, int] = field(default_factory=dict)  # role -> pid (supervisor, pods)
    api_port: int = 0
    forwards: dict[str, int] = field(default_factory=dict)  # name -> 127.0.0.1 port
    ready: bool = False
    token: str = ""  # the agent token the sandbox's mapper and sniffer share
    cloud_tenant: str = ""
    cloud_read_token: str = ""  # what a user of the cloud's API would hold
    cloud_ingest_token: str = ""  # what the mapper uploads with


class StateFile:
    """The state file in ``state_dir``; every mutation is written through at once."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.path = state_dir / "state.json"

    def load(self) -> SandboxState:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return SandboxState()
        return SandboxState(**raw)

    def save(self, state: SandboxState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=1))
        tmp.replace(self.path)

    def exists(self) -> bool:
        return self.path.exists()
