"""The workers as Ray actors (`rf run --backend ray`): the same `Worker` and messages as the local
processes, one actor per GPU of the cluster, or N actors sharing its cores.

Only the driver (`rf run`) writes the store and MLflow. Actors read and write checkpoints in the
experiment folder, which every node must see: each actor proves it with a probe file at start.
Ray imports lazily, so `rf` runs without it unless this backend is asked for.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rfcli.engine.messages import (
    ChunkDone,
    ChunkFailed,
    ChunkProgress,
    ChunkTrained,
    ReleaseRun,
    TrainChunk,
    WorkerReply,
)
from rfcli.engine.worker import Worker, describe_error, parking_bytes, start_worker
from rfcli.errors import UserError

INSTALL_HINT = "pip install 'rfcli[ray]'"


def require_ray() -> None:
    """Checked before anything is written: without Ray, say how to install it."""
    if importlib.util.find_spec("ray") is None:
        raise UserError(f"--backend ray needs Ray, which is not installed here: {INSTALL_HINT}")


ADDRESS_TIMEOUT_S = 5.0
"""How long `--address` may take to accept a connection before `rf run` says nothing answers there."""


def check_address(address: str) -> None:
    """A cluster address given with `--address` answers before anything is written: `host:port` (or
    `ray://host:port`, Ray's client) must be well formed and accept a connection within
    `ADDRESS_TIMEOUT_S`. 'auto' (the cluster this node belongs to) is Ray's to find."""
    from urllib.parse import urlsplit

    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is no number, or out of range
        host, port = None, None
    if parts.scheme != "ray" or not host or port is None or parts.path not in ("", "/"):
        raise UserError(
            f"--address {address!r}: expected the head node's HOST:PORT (e.g. 10.0.0.5:6379, as "
            "`ray start --head` prints it), ray://HOST:PORT for Ray's client, or auto"
        )
    try:
        socket.create_connection((host, port), timeout=ADDRESS_TIMEOUT_S).close()
    except OSError as error:
        why = "no answer" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise UserError(
            f"--address {address}: nothing accepts a connection there ({why} within "
            f"{ADDRESS_TIMEOUT_S:.0f} s); start the cluster with `ray start --head` on that machine, "
            "or give the address it prints"
        ) from None


def connect(address: str | None) -> None:
    """Join the Ray cluster at `address` ('auto': the one this node belongs to), or start a Ray for
    this machine alone: its servers listen on 127.0.0.1 only, no dashboard. No usage statistics
    either way; actors' output stays in Ray's logs, so it cannot tear through the live table."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    options: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR"}
    if address is None:
        with loopback_node():
            ray.init(address="local", include_dashboard=False, _node_ip_address=LOOPBACK, **options)
    else:
        try:
            ray.init(address=address, **options)
        except ConnectionError as error:  # 'auto' with no cluster, or a port that is not Ray's
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"--address {address}: Ray found no cluster to join there ({first})") from None


LOOPBACK = "127.0.0.1"
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch for a node that listens on loopback only (what it does on a laptop): read from the
environment when `ray` is imported, which a user's data, reward or metric module may have done
before rf could set it (the plan compiler imports them)."""


@contextmanager
def loopback_node() -> Iterator[None]:
    """While a Ray node starts: its servers listen on 127.0.0.1, not on every interface. Ray turns
    a node address of 127.0.0.1 into the machine's routable one unless its cluster switch is off,
    so the switch is set where Ray reads it, in this process (`ray_constants`, as imported) and in
    the environment its servers and agents start with; both are restored once the node runs."""
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(LOOPBACK_SWITCH)
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[LOOPBACK_SWITCH] = "0"
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before[0]
        if before[1] is None:
            os.environ.pop(LOOPBACK_SWITCH, None)
        else:
            os.environ[LOOPBACK_SWITCH] = before[1]


@dataclass(frozen=True)
class ActorHome:
    """Where an actor runs, in words a person finds it by."""

    node_id: str
    host: str
    ip: str
    pid: int

    def __str__(self) -> str:
        return f"node {self.node_id[:8]} ({self.host}, {self.ip}), pid {self.pid}"


class RayWorker:
    """One worker as an actor. Ray runs its calls one at a time in the order they were sent, as a
    local worker reads its inbox; torch loads with the first message, so the probe answers at once."""

    def __init__(self, worker_id: int, experiment: str, threads: int, folder: str) -> None:
        if Path(folder).is_dir():
            os.chdir(folder)  # relative data paths mean what they mean to `rf run`, as on the local backend
        self.worker_id = worker_id
        self.experiment = experiment
        self.threads = threads
        self.worker: Worker | None = None
        self.later: queue.Queue[WorkerReply] = queue.Queue()
        """What the worker says between answers: checkpoints made durable, progress."""

    def probe(self, token: str) -> tuple[ActorHome, bool]:
        """Where this actor runs, and whether it sees the driver's probe file and can write beside it."""
        import ray

        home = ActorHome(
            ray.get_runtime_context().get_node_id(),
            socket.gethostname(),
            ray.util.get_node_ip_address(),
            os.getpid(),
        )
        return home, answer_probe(Path(self.experiment), token, self.worker_id)

    def handle(self, message: TrainChunk | ReleaseRun) -> list[WorkerReply]:
        """The worker's answers to `message`. Ray answers a call once, so a chunk's answer waits
        until its checkpoint is durable: `ChunkTrained` and `ChunkDone` (or `ChunkFailed`) come
        together, and the next chunk starts after the write instead of beside it."""
        if self.worker is None:
            parking = parking_bytes(gpus_on_this_node())
            self.worker = start_worker(
                self.worker_id, self.experiment, self.threads, None, self.later.put, parking=parking
            )
        reply = self.worker.handle(message)
        replies = [] if reply is None else [reply]
        if isinstance(reply, ChunkTrained):
            while not (
                isinstance(late := self.later.get(), ChunkDone | ChunkFailed) and late.run_id == reply.run_id
            ):
                if not isinstance(late, ChunkProgress):  # progress of a chunk already over says nothing
                    replies.append(late)
            replies.append(late)
        return replies

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()


def gpus_on_this_node() -> int:
    """How many GPU workers share this actor's node (and its memory for parked runs); 1 without GPUs."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    resources: dict[str, float] = next((n["Resources"] for n in ray.nodes() if n["NodeID"] == node), {})
    return max(1, int(resources.get("GPU", 0)))


def what_happened(error: Exception) -> str:
    """One line: the worker's own error when its code raised, else Ray's first line."""
    from ray.exceptions import RayTaskError

    if isinstance(error, RayTaskError):
        return describe_error(error.cause)
    return str(error).splitlines()[0]


# The shared folder check: the driver writes a token, each actor reads it and writes its answer.


def probe_file(experiment: Path, token: str) -> Path:
    return experiment / f".shared-folder-probe-{token}"


def clear_probes(experiment: Path) -> None:
    """Probes and answers a killed `rf run` left: this process holds the experiment's lock, so no
    other `rf run` is probing it now."""
    for stale in experiment.glob(probe_file(experiment, "*").name):
        stale.unlink(missing_ok=True)


def answer_file(experiment: Path, token: str, worker_id: int) -> Path:
    return probe_file(experiment, token).with_suffix(f".worker-{worker_id}")


def answer_probe(experiment: Path, token: str, worker_id: int) -> bool:
    try:
        if probe_file(experiment, token).read_text(encoding="utf-8") != token:
            return False
        answer_file(experiment, token, worker_id).write_text(token, encoding="utf-8")
    except OSError:
        return False
    return True


def check_probe_answer(
    experiment: Path, token: str, worker_id: int, home: ActorHome | str, answered: bool
) -> None:
    """The driver reads the actor's answer back; the error names the node that cannot see the folder."""
    answer = answer_file(experiment, token, worker_id)
    seen = answered and answer.is_file() and answer.read_text(encoding="utf-8") == token
    answer.unlink(missing_ok=True)
    if not seen:
        raise UserError(
            f"worker {worker_id} on {home} cannot see the experiment folder {experiment}: with Ray, "
            "it must be on a filesystem that every node mounts at the same path (set experiments_dir)"
        )


def actor_options(gpus: int, cpus: float, workers: int | None) -> tuple[int, dict[str, Any]]:
    """How many actors start and what each asks Ray for. On a cluster with GPUs every actor holds one
    GPU of its own (Ray sets its `CUDA_VISIBLE_DEVICES`), with `--workers` or without: a worker never
    shares a GPU or sees another's. Without GPUs, `workers` actors (default 1) share the cores,
    spread over the nodes."""
    if workers is not None and gpus and workers > gpus:
        raise UserError(
            f"--workers {workers}: the Ray cluster has {gpus} GPU(s), and a worker holds one GPU of its own; "
            f"give --workers {gpus} or fewer"
        )
    count = workers or gpus or 1
    if gpus:
        return count, {"num_gpus": 1, "num_cpus": min(1.0, cpus / count)}
    return count, {"num_cpus": cpus / count, "scheduling_strategy": "SPREAD"}


@dataclass
class ActorHandle:
    worker_id: int
    actor: Any
    home: ActorHome | str = "a node not known yet"


class RayWorkerPool:
    """The `Pool` of Ray actors. A chunk sent is an actor call whose answer `replies` collects; an
    actor that died (killed, out of memory, node lost) answers with Ray's error instead, and is
    reported by `dead_workers` until `restart` starts a replacement."""

    def __init__(self, experiment: Path, workers: int | None, address: str | None) -> None:
        connect(address)  # first: how Ray starts depends on the environment it was imported in
        import ray

        self.experiment = experiment
        resources = ray.cluster_resources()
        count, options = actor_options(int(resources.get("GPU", 0)), resources.get("CPU", 1.0), workers)
        self.actor_class = ray.remote(RayWorker).options(**options)
        self.threads = max(
            1, int(resources.get("CPU", 1.0) / count)
        )  # torch threads: the actor's share of the cores
        self.token = uuid.uuid4().hex
        clear_probes(experiment)
        probe_file(experiment, self.token).write_text(self.token, encoding="utf-8")
        self._chunks: dict[Any, int] = {}
        """Each chunk in flight: the object ref of its answer -> the worker training it."""
        self._probes: dict[Any, int] = {}
        self._dead: dict[int, str] = {}
        self.workers = [self._start(worker_id) for worker_id in range(count)]
        try:
            self._check_probes(timeout=None)
        except UserError:
            self.shutdown()
            raise

    def _start(self, worker_id: int) -> ActorHandle:
        actor: Any = self.actor_class.remote(worker_id, str(self.experiment), self.threads, os.getcwd())
        self._probes[actor.probe.remote(self.token)] = worker_id
        return ActorHandle(worker_id, actor)

    def _check_probes(self, timeout: float | None) -> None:
        """The probes answered within `timeout` (None: all); a replacement's may answer later."""
        import ray
        from ray.exceptions import RayError

        refs = list(self._probes)
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        for ref in done:
            worker_id = self._probes.pop(ref)
            try:
                home, answered = ray.get(ref)
            except RayError as error:
                raise UserError(
                    f"worker {worker_id} could not start as a Ray actor ({what_happened(error)}): every "
                    "node needs the Python environment of rf run, with rfcli installed"
                ) from None
            self.workers[worker_id].home = home
            check_probe_answer(self.experiment, self.token, worker_id, home, answered)

    def describe(self) -> str:
        nodes = {handle.home.node_id for handle in self.workers if isinstance(handle.home, ActorHome)}
        placed = "; ".join(f"worker {handle.worker_id} on {handle.home}" for handle in self.workers)
        return f"{len(self.workers)} Ray actor(s) on {len(nodes)} node(s): {placed}"

    def send(self, worker_id: int, message: TrainChunk | ReleaseRun) -> None:
        answer = self.workers[worker_id].actor.handle.remote(message)
        if isinstance(message, TrainChunk):
            self._chunks[answer] = worker_id

    def replies(self, timeout: float) -> list[WorkerReply]:
        """Every answer that arrives within `timeout` seconds (waits for the first one only)."""
        import ray
        from ray.exceptions import RayError

        if self._probes:
            self._check_probes(timeout=0)
        refs = list(self._chunks)
        if not refs:
            time.sleep(timeout)
            return []
        done, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if done:
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        replies: list[WorkerReply] = []
        for ref in done:
            worker_id = self._chunks.pop(ref)
            try:
                replies.extend(ray.get(ref))
            except RayError as error:  # killed, out of memory, its node lost, or torch failed to load
                self._dead[worker_id] = f"its Ray actor failed: {what_happened(error)}"
        return replies

    def dead_workers(self) -> dict[int, str]:
        return dict(self._dead)

    def restart(self, worker_id: int) -> None:
        import ray

        self._dead.pop(worker_id, None)
        ray.kill(self.workers[worker_id].actor, no_restart=True)
        self.workers[worker_id] = self._start(worker_id)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Chunks in flight finish within `timeout` (as on the local backend), then Ray lets go."""
        import ray

        closing = [handle.actor.close.remote() for handle in self.workers]
        ray.wait(closing, num_returns=len(closing), timeout=timeout)
        for handle in self.workers:
            ray.kill(handle.actor, no_restart=True)
        probe_file(self.experiment, self.token).unlink(missing_ok=True)
        ray.shutdown()
