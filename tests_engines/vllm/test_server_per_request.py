"""Per-request SharpV options through the real OpenAI-compatible server.

One ``vllm serve`` (SharpV Qwen2.5-VL, server budget 0.3, ``--trust-request-mm-kwargs``, without
which vLLM refuses every per-request ``mm_processor_kwargs``) gets chat requests with the same
video and different ``mm_processor_kwargs.sharpv`` blocks: the prompt token counts differ by
exactly the budget formula's differences, a bad block gets HTTP 400 with the start-up
check's message, and the server goes on serving.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from conftest import BUDGET, QWEN_ARCH

from sharpv.engines.vllm import checkpoints
from sharpv_kernels import budget_token_count

TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
FRAMES = 8


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(qwen_dir, tmp_path_factory):
    port = _port()
    overrides = {"architectures": [QWEN_ARCH], "sharpv": {"budget": BUDGET}}
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(qwen_dir),
        "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
        "--max-model-len", "2048", "--served-model-name", "m", "--mm-processor-cache-gb", "0",
        "--limit-mm-per-prompt", json.dumps({"video": 1, "image": 0}),
        "--hf-overrides", json.dumps(overrides), "--chat-template", TEMPLATE,
        "--chat-template-content-format", "string", "--trust-request-mm-kwargs",
    ]  # fmt: skip
    log = (tmp_path_factory.mktemp("server") / "log.txt").open("w")
    env = dict(os.environ, VLLM_CPU_OMP_THREADS_BIND="nobind")
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 600
        while True:
            assert proc.poll() is None, open(log.name).read()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "server not ready"
                time.sleep(1)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _video_url() -> str:
    import base64
    import io

    from PIL import Image

    parts = []
    for frame in checkpoints.make_video(FRAMES, seed=7):
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="PNG")
        parts.append(base64.b64encode(buf.getvalue()).decode())
    return "data:video/jpeg;base64," + ",".join(parts)


def _post(port: int, block: dict | None) -> tuple[int, dict]:
    body = {
        "model": "m", "max_tokens": 3, "temperature": 0.0,
        "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": _video_url()}},
            {"type": "text", "text": "what happens ?"}]}],
    }  # fmt: skip
    if block is not None:
        body["mm_processor_kwargs"] = {"sharpv": block}
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_server_sizes_each_request_by_its_block(server):
    status, base = _post(server, None)
    assert status == 200, base
    n0 = base["usage"]["prompt_tokens"]
    f = checkpoints.QWEN_TOKENS_PER_GROUP
    count = {b: budget_token_count(b, FRAMES // 2, f) for b in (BUDGET, 0.6, 0.1)}
    for budget in (0.6, 0.1):
        status, out = _post(server, {"budget": budget})
        assert status == 200, out
        assert out["usage"]["prompt_tokens"] - n0 == count[budget] - count[BUDGET]
    status, out = _post(server, {"budget": 1.5})
    assert status == 400, out
    assert "option budget of method sharpv must be a number in (0, 1]" in json.dumps(out)
    status, again = _post(server, None)  # the server goes on, same answer as before
    assert status == 200 and again["choices"][0]["message"] == base["choices"][0]["message"]
