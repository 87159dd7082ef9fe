"""Processes that share the cores get a share of threads each: the environment a server worker
or a benchmark pool child starts with, and ONNX Runtime honouring it."""
from __future__ import annotations

from aisolve.models.inference import onnx_session
from aisolve.server.threads import THREAD_VARIABLES, shared_thread_env, thread_share, usable_cores
from conftest import REPO


def test_each_of_several_processes_gets_its_share_and_at_least_one_thread():
    assert thread_share(1) == usable_cores()
    assert thread_share(2) == max(1, usable_cores() // 2)
    assert thread_share(10 * usable_cores()) == 1
    env = shared_thread_env(2, {"PATH": "/bin"})
    assert env["PATH"] == "/bin"
    assert all(env[name] == str(thread_share(2)) for name in THREAD_VARIABLES)


def test_a_thread_count_the_user_set_is_kept():
    env = shared_thread_env(2, {"OMP_NUM_THREADS": "3"})
    assert env["OMP_NUM_THREADS"] == "3" and env["OPENBLAS_NUM_THREADS"] == str(thread_share(2))


def test_onnx_runtime_takes_the_thread_count_from_omp_num_threads(monkeypatch):
    weights = REPO / "models" / "weights" / "element_net.onnx"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert onnx_session(weights, "cpu").get_session_options().intra_op_num_threads == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert onnx_session(weights, "cpu").get_session_options().intra_op_num_threads == 0  # its own default
