"""Folder runs on a Dask distributed cluster: `python -m pipeline run FOLDER --out OUT --scheduler ADDRESS`
(an existing cluster) or `--scheduler local --workers N` (a LocalCluster on this machine).

The client makes the checks and choices of a local run (pipeline/cli.py run, pipeline/run_state.py):
--out writable and not shadowing an input, output names kept in <out>/.run_state, the settings
(read from the workers' loaded detectors, which must all agree) against those of the results already
there (--force), and which results are done (cli.already_done, the test of cli.process_one). It sends
the pending photos out in chunks and keeps the progress bar, run_log.txt and index.jsonl (it is their
only writer). Each worker loads
the model once (DetectorPlugin, a Dask WorkerPlugin; a restarted worker loads it again) and runs
every photo of a chunk through pipeline.cli.process_one, the same per-photo code path as a local run,
which writes the PNG and then the JSON through a temp file + os.replace. So the JSON is
byte-identical to a local run's, a killed client resumes as a local run does, and a killed worker's
chunk is run again by the scheduler: photos whose JSON that worker had already written are taken as
done (not redone, not counted twice).

Workers and client must see the inputs, the model and OUT at the same paths (one machine, or a
shared filesystem); relative paths are resolved against the client's working directory, into which
the plugin changes on workers where it exists. Each task uses $HYPERFACE_THREADS onnxruntime/OpenCV
threads: its host's cores divided by the worker threads on that host (or --task-threads).

Dask is imported only here, so a run without --scheduler never imports it.
"""
from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import dask
from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker
from tqdm import tqdm

from core.config import load_config
from pipeline import cli
from pipeline.errors import PipelineError
from pipeline.images import scan_inputs
from pipeline.index import INDEX_NAME, index_record, read_result
from pipeline.run_state import (RUN_STATE, RunState, check_no_shadowing, prepare_out,
                                settings_difference)

log = logging.getLogger(__name__)
PLUGIN_NAME = "hyperface-detector"
# for this process and the LocalCluster it starts: no statistical profiler sampling the task thread every
# 10 ms, slower health ticks and monitors (an idle 2-worker cluster: 7.5 % -> 1 % of a core; measured in
# benchmarks/dask_overhead.py). Workers of an existing cluster keep their own configuration: start them
# with DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False (pipeline/README.md).
LEAN_CONFIG = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "500ms",
               "distributed.admin.system-monitor.interval": "2s", "distributed.admin.system-monitor.gil.enabled": False,
               "distributed.worker.memory.monitor-interval": "1s"}


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _host(address: str) -> str:
    return address.split("://", 1)[-1].rsplit(":", 1)[0]


class DetectorPlugin(WorkerPlugin):
    """Loads one HyperFace detector per worker process, when the worker starts or the plugin is
    registered; tasks find it as get_worker().plugins[PLUGIN_NAME] (.detector, .cfg, .settings)."""

    def __init__(self, settings: dict, cwd: str, task_threads: int | None, host_threads: dict[str, int]):
        self.options, self.cwd = settings, cwd
        self.task_threads, self.host_threads = task_threads, host_threads
        self.detector = self.cfg = self.settings = None

    def setup(self, worker):
        import cv2  # noqa: PLC0415

        from pipeline.detector import HyperFace  # noqa: PLC0415
        if os.path.isdir(self.cwd) and os.getcwd() != self.cwd:
            os.chdir(self.cwd)
        threads = self.task_threads or max(1, _cpus() // max(1, self.host_threads.get(_host(worker.address),
                                                                                       worker.state.nthreads)))
        os.environ["HYPERFACE_THREADS"] = str(threads)
        cv2.setNumThreads(threads)
        s = self.options
        self.cfg = load_config(s["config"])
        self.detector = HyperFace(s["model"], backend=s["backend"], proposals=s["proposals"], post=s["post"],
                                  irp_iterations=s["irp_iterations"], config=self.cfg, ssd_model_dir=s["ssd_model"])
        self.settings = cli.detector_settings(self.detector)  # what every result records (run_state.py)


def _worker_settings(dask_worker) -> dict | None:
    plugin = dask_worker.plugins.get(PLUGIN_NAME)
    return None if plugin is None else plugin.settings


class LogEntries:
    """The RunLog interface on a worker: lines are sent back to the client, which writes them."""

    def __init__(self):
        self.entries: list[tuple[str, str, str]] = []

    def add(self, kind: str, path, reason: str) -> None:
        self.entries.append((kind, str(path), reason))


def detect_chunk(items: list[tuple[str, str]], out: str, settings: dict) -> list[dict]:
    """Worker side: run process_one on each (input path, output name); returns per photo its status,
    its run-log lines and its index record."""
    plugin = get_worker().plugins[PLUGIN_NAME]
    if plugin.settings != settings:  # e.g. a worker that joined later with another backend or model
        diff = "; ".join(settings_difference(settings, plugin.settings)[:3])
        raise PipelineError(get_worker().address, f"this worker's settings differ from the run's ({diff})")
    out_dir = Path(out)
    results = []
    for path_str, stem in items:
        path, json_path = Path(path_str), out_dir / f"{stem}.json"
        log_lines = LogEntries()
        if cli.already_done(json_path, settings):
            # pending when the run started, so an earlier attempt of this chunk (on a worker that died)
            # wrote it: done in this run; repeat the CONVERTED line the client never received
            status, doc = "done", read_result(json_path)
            if doc and doc.get("notes"):
                log_lines.add("CONVERTED", path, "; ".join(doc["notes"]))
        else:
            status = cli.process_one(path, stem, out_dir, plugin.detector, plugin.cfg, log_lines, settings)
            doc = read_result(json_path) if status == "done" else None
        results.append({"stem": stem, "status": status, "log": log_lines.entries,
                        "record": index_record(json_path.name, doc) if doc else None})
    return results


def default_chunk_size(pending: int, threads: int) -> int:
    """About 16 chunks per worker thread (the last chunks balance the load), 1 to 16 photos each."""
    return max(1, min(16, pending // max(1, 16 * threads)))


def _check_plugin(responses) -> None:
    """Raise the first worker's setup error (a bad model or config) on the client."""
    if not isinstance(responses, dict):
        return
    for worker, resp in responses.items():
        if isinstance(resp, dict) and resp.get("status") == "error":
            exc = resp.get("exception")
            if isinstance(exc, BaseException):
                raise exc
            raise RuntimeError(f"worker {worker}: {resp.get('text') or exc}")


def run_dask(inputs: list[str | Path], model: str | Path, out: str | Path, scheduler: str,
             workers: int | None = None, backend: str | None = None, proposals: str | None = None, post: str = "lnms",
             irp_iterations: int | None = None, config=None, ssd_model: str | Path | None = None,
             chunk_size: int | None = None, task_threads: int | None = None, progress: bool = True,
             force: bool = False) -> dict[str, int]:
    """pipeline.cli.run on a Dask cluster ("local": a LocalCluster of `workers` processes, one thread
    each; otherwise a scheduler address): the same checks, names (.run_state), settings, resume and
    counts {"done", "already_done", "skipped", "failed", "missing"}."""
    from pipeline.backends import DEFAULT_BACKEND  # noqa: PLC0415
    if irp_iterations is not None and irp_iterations < 0:
        raise ValueError(f"--irp must be >= 0, got {irp_iterations}")
    for name, value in (("--workers", workers), ("--chunk-size", chunk_size), ("--task-threads", task_threads)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    load_config(config)  # a bad config fails here, before any cluster starts
    out = prepare_out(Path(out))
    scan = scan_inputs(inputs)
    state = RunState(out)
    names = state.assign_names(scan.paths, reserved=set())
    check_no_shadowing(out, scan.folders, scan.paths, names, [cli.RUN_LOG, RUN_STATE, INDEX_NAME])
    run_log = cli.RunLog(out / cli.RUN_LOG)
    run_log.path.touch()
    options = {"model": str(model), "backend": backend or DEFAULT_BACKEND, "proposals": proposals, "post": post,
               "irp_iterations": irp_iterations, "config": None if config is None else str(config),
               "ssd_model": None if ssd_model is None else str(ssd_model)}
    if not logging.getLogger().isEnabledFor(logging.INFO):  # -v shows Dask's own INFO lines
        logging.getLogger("distributed").setLevel(logging.WARNING)
    with dask.config.set(LEAN_CONFIG):
        return _run_on_cluster(scheduler, workers, options, task_threads, force, chunk_size, progress,
                               out, scan, state, names, run_log)


def _run_on_cluster(scheduler, workers, options, task_threads, force, chunk_size, progress,
                    out, scan, state, names, run_log) -> dict[str, int]:
    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.INFO if logging.getLogger().isEnabledFor(logging.INFO) else logging.CRITICAL)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler)
        except (OSError, TimeoutError, ValueError) as err:
            raise PipelineError(scheduler, f"cannot reach the Dask scheduler ({str(err).splitlines()[0]})") from None
    try:
        client.wait_for_workers(1)
        info = client.scheduler_info(n_workers=-1)
        host_threads: dict[str, int] = {}
        for addr, w in info["workers"].items():
            host_threads[_host(addr)] = host_threads.get(_host(addr), 0) + int(w.get("nthreads", 1))
        total_threads = sum(host_threads.values()) or 1
        _check_plugin(client.register_plugin(DetectorPlugin(options, os.getcwd(), task_threads, host_threads),
                                             name=PLUGIN_NAME))
        # every worker loaded the same model and settings (a worker without onnxruntime would differ)
        per_worker = {a: s for a, s in client.run(_worker_settings).items() if s is not None}
        settings = next(iter(per_worker.values()))
        for addr, s in per_worker.items():
            if s != settings:
                raise PipelineError(addr, "this worker's settings differ from another's ("
                                    + "; ".join(settings_difference(settings, s)[:3]) + ")")
        index, counts = cli.start_results(out, state, settings, force, scan, run_log)
        pending = []
        for path, stem in zip(scan.paths, names):
            json_path = out / f"{stem}.json"
            if cli.already_done(json_path, settings):  # the test of cli.process_one
                counts["already_done"] += 1
                run_log.add("SKIPPED", path, f"already done ({json_path.name} exists)")
            else:
                pending.append((str(path), stem))
        size = chunk_size or default_chunk_size(len(pending), total_threads)
        chunks = [pending[i:i + size] for i in range(0, len(pending), size)]
        log.info("%d photos in %d chunks of %d on %d worker threads", len(pending), len(chunks), size, total_threads)
        token = uuid.uuid4().hex[:12]
        futures = {client.submit(detect_chunk, chunk, str(out), settings, pure=False,
                                 key=f"hyperface-chunk-{i}-{token}"): chunk for i, chunk in enumerate(chunks)}
        with tqdm(total=len(pending), desc="images", unit="img", disable=None if progress else True) as bar:
            for fut in as_completed(futures):
                chunk = futures[fut]
                try:
                    results = fut.result()
                except Exception as err:  # the chunk failed for good (e.g. its workers kept dying)
                    reason = f"error: {err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                    results = [{"stem": stem, "status": "failed", "log": [("FAILED", p, reason)], "record": None}
                               for p, stem in chunk]
                records = []
                for r in results:
                    for kind, p, reason in r["log"]:
                        run_log.add(kind, Path(p), reason)
                    counts[r["status"]] += 1
                    if r["record"] is not None:
                        records.append(r["record"])
                index.append(records)
                bar.update(len(chunk))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return counts
