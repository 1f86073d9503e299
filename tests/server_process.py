"""``callwatch serve`` as a real separate process, for tests of what crosses processes:
several instances behind one store and bus, a server killed mid-call and restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from assist.demo import free_port

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess:
    """One ``callwatch serve`` (tiny.en, no auth, no assist: quick to start)."""

    def __init__(
        self,
        home: Path,
        db_url: str,
        instance_id: str,
        bus_url: str | None = None,
        port: int | None = None,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.home = home
        self.db_url = db_url
        self.instance_id = instance_id
        self.bus_url = bus_url
        self.port = port or free_port()
        self.extra = extra or []
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / f"serve-{instance_id}.log"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 180.0) -> ServerProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "CALLWATCH_HOME": str(self.home),
            "CALLWATCH_INSTANCE_ID": self.instance_id,
            "HF_HUB_OFFLINE": "1",
            **self.env,
        }
        if self.bus_url:
            env["CALLWATCH_BUS_URL"] = self.bus_url
        cmd = [
            sys.executable,
            "-m",
            "assist.cli",
            "serve",
            "--port",
            str(self.port),
            "--db",
            self.db_url,
            "--no-auth",
            "--no-assist",
            "--workers",
            "1",
            *self.extra,
        ]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.instance_id} exited: {self.tail()}")
            try:
                if httpx.get(f"{self.http}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server {self.instance_id} did not start: {self.tail()}")

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.http}{path}", params=params, timeout=30)
        r.raise_for_status()
        return r.json()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (a crash, an OOM kill, a pulled plug)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        """SIGTERM: the server ends its calls and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"
