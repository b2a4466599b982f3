"""The Dask cluster suites and sweeps run on: a local one by default, or an existing one.

By default a `LocalCluster` on this machine, one single-threaded worker process per core
(the simulator is CPU-bound and holds the GIL); with a scheduler address, that cluster's
workers, which need xen970 installed at the same version (a job checks) but no shared
file system: jobs carry their scenario text and results carry the run files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Self, TypeVar

from distributed import Client, LocalCluster, as_completed

from framework.errors import UsageError

__all__ = ["Engine"]

JobT = TypeVar("JobT")
ResultT = TypeVar("ResultT")
_CONNECT_TIMEOUT = "10s"


class Engine:
    """A Dask client over a local cluster, or over the scheduler at `address`."""

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise UsageError(f"xen970: --workers must be at least 1, got {workers}")
        self.address = address
        self.workers = workers or os.cpu_count() or 1
        self._cluster: LocalCluster | None = None
        self._client: Client | None = None

    def __enter__(self) -> Self:
        if self.address is None:
            self._cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # the scheduler serves HTTP anyway: no fixed port
                silence_logs=logging.ERROR,
            )
            self._client = Client(self._cluster)
        else:
            try:
                self._client = Client(self.address, timeout=_CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                raise UsageError(
                    f"xen970: --scheduler {self.address}: cannot connect: {exc}"
                ) from None
        return self

    def __exit__(self, *_exc_info: object) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    @property
    def description(self) -> str:
        """Where the jobs run, for the report."""
        if self._cluster is not None:
            return f"local Dask cluster, {self.workers} worker process(es)"
        client = self._client
        count = len(client.scheduler_info()["workers"]) if client is not None else 0
        return f"Dask scheduler {self.address}, {count} worker(s)"

    def run(
        self,
        fn: Callable[[JobT], ResultT],
        jobs: Sequence[JobT],
        failed: Callable[[JobT, BaseException], ResultT],
    ) -> Iterator[tuple[int, ResultT]]:
        """(index, result) for each job as it finishes; a job whose worker died or whose
        function raised gets `failed(job, exception)` instead."""
        assert self._client is not None, "use Engine as a context manager"
        if not jobs:
            return
        futures = self._client.map(fn, list(jobs), pure=False, retries=0)
        index = {f.key: i for i, f in enumerate(futures)}
        for future in as_completed(futures):
            i = index[future.key]
            try:
                yield i, future.result()
            except Exception as exc:  # noqa: BLE001 - reported as that job's failure
                yield i, failed(jobs[i], exc)
            future.release()
