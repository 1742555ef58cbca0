"""Faults on a Ray cluster: a worker killed mid-run is restarted and its chunk retried (every
row once, equal to one process); a chunk's error, an unreachable or full cluster, a worker that
cannot find the model, a model built in memory: one clear line each, never a Ray traceback."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest
import torch
from conftest import save_tiny

import interp
from interp.errors import ExecutorError, InvalidSettingError
from interp.interventions import metrics

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return interp.load_model(str(save_tiny(tmp_path_factory.mktemp("tiny-llama-faults"))))


@pytest.fixture(scope="module")
def executor():
    with interp.Ray(workers=2, chunk_rows=1) as ray_executor:
        yield ray_executor


@pytest.fixture(scope="module")
def pairs(model):
    ids = torch.randint(3, model.d_vocab, (24, 8), generator=torch.Generator().manual_seed(1))
    clean = interp.generate(model, ids.tolist(), max_new_tokens=2, temperature=0, stop_at_eos=False)
    ids[:, -2] = (ids[:, -2] + 7) % model.d_vocab
    forced = [row.continuation_ids for row in clean]
    return clean, interp.generate(model, ids.tolist(), continuation=forced)


def test_a_worker_killed_mid_run_is_restarted_and_no_row_is_lost_or_doubled(model, executor, pairs):
    clean, corrupted = pairs
    metric = metrics.logit_diff(40, 41)
    one = interp.patch(model, clean, corrupted, sites=["heads", "resid"], metric=metric)
    interp.evaluate(model, clean, metric, executor=executor)  # the workers are up
    victim = executor.processes()[0][0]
    killed: list[float] = []

    def kill() -> None:
        time.sleep(0.3)
        os.kill(victim, signal.SIGKILL)
        killed.append(time.monotonic())

    killer = threading.Thread(target=kill)
    start = time.monotonic()
    killer.start()
    got = interp.patch(
        model, clean, corrupted, sites=["heads", "resid"], metric=metric, executor=executor
    )
    end = time.monotonic()
    killer.join()
    assert start < killed[0] < end  # the worker died while the run was going
    assert victim not in [pid for pid, _ in executor.processes()]  # Ray restarted it
    assert got.rows == one.rows == 24
    for site in ("heads", "resid"):
        a, b = one[site], got[site]
        assert torch.allclose(a.per_row, b.per_row, atol=1e-6, equal_nan=True)
        assert torch.allclose(a.effect, b.effect, atol=1e-6, equal_nan=True)
        assert torch.allclose(a.clean_per_row, b.clean_per_row, atol=1e-6)


def test_a_chunk_that_fails_on_bad_input_raises_the_error_one_process_raises(
    model, executor, pairs
):
    clean, _ = pairs

    def answer_logit(logits, traces):  # a user's metric that refuses one row
        for trace in traces:
            if trace.token_ids[1] == clean[17].token_ids[1]:
                raise InvalidSettingError(f"row with first token {int(trace.token_ids[1])}: no")
        return logits[:, -1, 40]

    with pytest.raises(InvalidSettingError) as here:
        interp.evaluate(model, clean, answer_logit)
    with pytest.raises(InvalidSettingError) as there:
        interp.evaluate(model, clean, answer_logit, executor=executor)
    assert str(there.value) == str(here.value) and "\n" not in str(there.value)
    assert interp.evaluate(model, clean, executor=executor).values.shape == (24,)  # still up


def test_a_worker_that_cannot_find_the_model_says_so(tmp_path, executor):
    folder = save_tiny(tmp_path / "moved")
    moved = interp.load_model(str(folder))
    runs = interp.generate(moved, [[5, 6, 7], [8, 9, 10]], max_new_tokens=1, temperature=0)
    folder.rename(tmp_path / "elsewhere")  # the driver has it loaded; the workers find no folder
    with pytest.raises(
        ExecutorError, match=r"could not load the model: the model folder .* does not exist"
    ):
        interp.evaluate(moved, runs, executor=executor)


def test_a_model_built_in_memory_is_refused(tiny_llama):
    runs = interp.generate(tiny_llama, [[5, 6, 7], [8, 9, 10]], max_new_tokens=1)
    with pytest.raises(ExecutorError, match="built in memory.*interp.load_model"):
        interp.evaluate(tiny_llama, runs, executor=interp.Ray(workers=1))


def test_more_workers_than_free_cpus_is_one_line(model, executor, pairs):
    clean, _ = pairs
    with pytest.raises(ExecutorError, match=r"free CPUs of .*; 3 workers x 1 CPU need 3"):
        interp.evaluate(model, clean, executor=interp.Ray(workers=3))


def test_an_unreachable_cluster_is_one_line_at_once():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(ExecutorError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        with interp.Ray(address=f"127.0.0.1:{port}"):
            pass
    assert time.monotonic() - start < 30
    for address in ("nowhere", "ray://host:port", "host:99999", "10.0.0.1"):
        with pytest.raises(InvalidSettingError, match="a Ray address is 'auto'"):
            interp.Ray(address=address)


def test_the_local_cluster_listens_on_localhost_only_with_token_authentication(
    model, executor, pairs
):
    import ray

    interp.evaluate(model, pairs[0], executor=executor)
    assert executor.record()["processes"] == 2
    host, port = ray.get_runtime_context().gcs_address.rsplit(":", 1)
    assert host == "127.0.0.1" and os.environ["RAY_AUTH_MODE"] == "token"
    outward = [
        info[4][0]
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        if not info[4][0].startswith("127.")
    ]
    for address in outward:  # the machine's other addresses do not answer
        with pytest.raises(OSError):
            socket.create_connection((address, int(port)), timeout=2).close()


@pytest.mark.parametrize(
    "settings",
    [
        {"workers": 0},
        {"workers": 1.5},
        {"cpus_per_worker": 0},
        {"gpus_per_worker": -1},
        {"chunk_rows": 0},
        {"address": 5},
    ],
)
def test_settings_are_checked_where_they_are_built(settings, unchecked):
    with pytest.raises(InvalidSettingError):
        interp.Ray(**settings)
