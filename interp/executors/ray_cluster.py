"""Joining a Ray cluster, or starting one on this machine: bound to localhost and with Ray's
token authentication on, checked to have room for the workers, and left as it was found (a
cluster interp started is shut down; one it joined is only disconnected from)."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from interp.errors import ExecutorError, InvalidSettingError

REACH_TIMEOUT_S = 5.0
ROOM_WAIT_S = 10.0


def import_ray() -> Any:
    """Ray, or the line that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ExecutorError("Ray is not installed: pip install 'interp[ray]'") from None
    return ray


@dataclass
class Connection:
    """This process's link to a cluster: whether interp started it (then shuts it down) or
    joined it (then disconnects)."""

    started: bool
    joined: bool
    address: str

    def close(self) -> None:
        ray = import_ray()
        if (self.started or self.joined) and ray.is_initialized():
            ray.shutdown()


def connect(address: str | None) -> Connection:
    """Join `address` ("auto", "ray://host:port" or "host:port"), reuse the cluster this
    process already joined, or start a local one (None)."""
    ray = import_ray()
    if address is not None:
        _check_reachable(address)
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address not in (None, "auto", current, f"ray://{current}"):
            raise ExecutorError(
                f"this process is joined to the Ray cluster at {current}; it cannot join "
                f"{address} too (ray.shutdown() first)"
            )
        return Connection(started=False, joined=False, address=current)
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address is None:
        return _start_local(ray, quiet)
    try:
        ray.init(address=address, **quiet)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError, ...
        raise ExecutorError(f"cannot join the Ray cluster at {address}: {_line(exc)}") from None
    return Connection(started=False, joined=True, address=address)


def check_room(workers: int, cpus: float, gpus: float) -> None:
    """Refuse, in one line, workers the cluster cannot place within a few seconds (workers
    just stopped take a moment to free theirs; Ray itself would wait forever)."""
    ray = import_ray()
    deadline = time.monotonic() + ROOM_WAIT_S
    while True:
        free, total = ray.available_resources(), ray.cluster_resources()
        short = [
            (unit, each)
            for unit, each in (("CPU", cpus), ("GPU", gpus))
            if each and free.get(unit, 0.0) + 1e-9 < workers * each
        ]
        if not short or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for unit, each in short:
        need = workers * each
        if need:
            raise ExecutorError(
                f"the Ray cluster has {free.get(unit, 0.0):g} free {unit}s of "
                f"{total.get(unit, 0.0):g}; {workers} workers x {each:g} {unit} need {need:g}"
            )


def _start_local(ray: Any, quiet: dict[str, Any]) -> Connection:
    from ray._private import ray_constants

    if os.environ.get("RAY_AUTH_MODE", "token") != "token":
        raise ExecutorError(
            f"RAY_AUTH_MODE is {os.environ['RAY_AUTH_MODE']!r}: interp starts a local Ray "
            "cluster only with Ray's token authentication (unset it, or set it to 'token')"
        )
    bind_all = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False  # the node's address is 127.0.0.1, not the LAN's
    try:
        context = ray.init(
            address="local",  # a new cluster, never another process's local one
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **quiet,
        )
    except Exception as exc:
        raise ExecutorError(f"could not start a local Ray cluster: {_line(exc)}") from None
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = bind_all
    node = str(context.address_info.get("node_ip_address", ""))
    if not ipaddress.ip_address(node).is_loopback or os.environ.get("RAY_AUTH_MODE") != "token":
        ray.shutdown()
        raise ExecutorError(
            f"the local Ray cluster started on {node} with authentication "
            f"{os.environ.get('RAY_AUTH_MODE')!r}, not on localhost with a token: refused"
        )
    return Connection(started=True, joined=False, address="local")


def check_address(address: object) -> tuple[str, int] | None:
    """(host, port) of 'ray://HOST:PORT' or 'HOST:PORT', None for 'auto'; anything else is
    refused where the executor is built."""
    if address == "auto":
        return None
    host, _, port = str(address).removeprefix("ray://").rpartition(":")
    if not isinstance(address, str) or not host or not port.isdigit() or int(port) > 65535:
        raise InvalidSettingError(
            f"a Ray address is 'auto', 'ray://HOST:PORT' or 'HOST:PORT', got {address!r}"
        )
    return host.strip("[]"), int(port)


def _check_reachable(address: str) -> None:
    """A host:port address that does not answer in a few seconds gets one line now, not Ray's
    minute of retries."""
    where = check_address(address)
    if where is None:
        return
    host, port = where
    try:
        socket.create_connection((host, port), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise ExecutorError(f"cannot reach the Ray cluster at {address}: {_line(exc)}") from None


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
