"""Reaching Ray: the import with one clear line when it is missing, the connection, the pool size."""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
from typing import Iterator, NamedTuple

from edgelite.errors import EdgeliteError, one_line

log = logging.getLogger(__name__)

MISSING = "Ray is not installed: pip install 'edgelite[cluster]'"


def import_ray():
    """`ray` with Ray Data, or one line saying how to install it."""
    try:
        import ray
        importlib.import_module("ray.data")  # Ray without its Data extra has no pyarrow
        importlib.import_module("pyarrow")
    except ImportError:
        raise EdgeliteError(MISSING) from None
    return ray


class Cluster(NamedTuple):
    address: str  # where the driver is connected (the GCS address, or "local")
    nodes: int
    cpus: int


@contextlib.contextmanager
def connect(address: str | None = "local", verbose: bool = True) -> Iterator[Cluster]:
    """Connect the driver to Ray for the duration of the block.

    `local` joins the Ray already running on this machine (`ray start`), else starts one for this run (its
    CPUs) and stops it after; `auto` joins the cluster this machine belongs to; anything else is a cluster address
    (HOST:6379, or ray://HOST:10001 for Ray Client). A driver already connected (ray.init called by the
    caller, e.g. a test or a notebook) is used as it is and left connected.
    """
    ray = import_ray()
    local = address in (None, "", "local")
    ours, joined = False, False  # ours: connected here (and disconnected after); joined: a Ray that was running
    if not ray.is_initialized():
        debug = bool(os.environ.get("EDGELITE_DEBUG"))
        # the workers' own output (LiteRT's delegate notice on every actor) stays on the nodes unless debugging:
        # a worker's failure still reaches the driver as an exception
        options = dict(logging_level=logging.INFO if debug else logging.ERROR, include_dashboard=False,
                       log_to_driver=debug)
        if address not in (None, "", "local", "auto"):
            _check_reachable(address)
        try:
            joined = not local or _running_here(ray)
            with _starting(debug, starting=not joined):
                if local:
                    ray.init(**options)
                else:
                    ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            raise EdgeliteError(f"cannot reach the Ray cluster at {address}: {one_line(exc)}") from None
        ours = True
    quiet_data(ray)
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = int(ray.cluster_resources().get("CPU", 0))
        gcs = ray.get_runtime_context().gcs_address
        where = f"local: {'the Ray running here' if joined else 'started for this run'} ({gcs})" if ours and local \
            else gcs
        cluster = Cluster(where, len(nodes), cpus)
        if verbose:
            log.info(f"ray: {cluster.address}, {cluster.nodes} node(s), {cluster.cpus} CPUs")
        yield cluster
    finally:
        if ours:
            ray.shutdown()


def _running_here(ray) -> bool:
    """Whether ray.init() without an address will join a Ray already running on this machine (RAY_ADDRESS, or the
    one `ray start` recorded) rather than start one: Ray's own lookup, a private function (False without it)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address(None) is not None
    except Exception:  # noqa: BLE001  another Ray version, or a stale record of a cluster that is gone
        return False


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """HOST:PORT (or ray://HOST:PORT) answers a TCP connection within `timeout` seconds: Ray itself retries an
    unreachable address for minutes before it gives up."""
    import socket

    where = address.split("://", 1)[-1]
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise EdgeliteError(f"a Ray cluster address is local, auto, HOST:PORT or ray://HOST:PORT, not {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise EdgeliteError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _starting(debug: bool, starting: bool):
    """Settings of the processes Ray starts now (environment variables read at start, each unless set already):

    - RAY_BACKEND_LOG_LEVEL=fatal (unless debugging): Ray's C++ core prints an error-level notice about
      restartable actors on every Ray Data run (ray issue 53727); failures still reach the driver as
      exceptions. Setting it is announced on stderr, silenced here while Ray starts.
    - RAY_worker_niceness=0 for an instance started here: Ray starts its workers at nice 15, which on a machine
      doing anything else starves them (local `predict` runs at 0). A cluster's nodes keep what `ray start` set."""
    settings = {} if debug else {"RAY_BACKEND_LOG_LEVEL": "fatal"}
    if starting:
        settings["RAY_worker_niceness"] = "0"
    settings = {key: value for key, value in settings.items() if key not in os.environ}
    os.environ.update(settings)
    try:
        if debug:
            yield
        else:
            from edgelite.quiet import quiet

            with quiet():
                yield
    finally:
        for key in settings:
            del os.environ[key]


def quiet_data(ray) -> None:
    """The driver shows its own progress line: Ray Data's bars and start-up banners off."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.print_on_execution_start = False
    if not os.environ.get("EDGELITE_DEBUG"):
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # a failure reaches the driver as one line


def pool_size(actors: int | None, cluster: Cluster, blocks: int | None = None) -> tuple[int, float]:
    """(actors, CPUs reserved for each): one actor per CPU by default, never more than there are blocks of
    files to give them; more actors than CPUs share them."""
    if actors is not None and actors < 1:
        raise EdgeliteError(f"--actors must be at least 1, got {actors}")
    cpus = max(1, cluster.cpus or os.cpu_count() or 1)
    size = min(actors or cpus, blocks or actors or cpus)
    return size, min(1.0, cpus / size)
