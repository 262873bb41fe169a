"""Per-request settings are range-checked at every door before any work (issue 16 item 9):
a ``recall_k`` of 2**63 once reached Postgres as a LIMIT it refused, on every request."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from mnemograph.services import Services
from mnemograph.validation import check_knobs
from stores.errors import InvalidInput, NotFound
from tests.conftest import cli_env
from tests.servers import new_key, serve

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "knobs",
    [{"recall_k": 2**63}, {"kg_hops": 3}, {"window_k": 0}, {"recall_tokens": -1},
     {"strategy": "everything"}, {"max_tokens": "12"}],
)  # fmt: skip
def test_out_of_bounds_knobs_are_refused(knobs: dict[str, object]) -> None:
    with pytest.raises(InvalidInput, match="invalid per-request setting"):
        check_knobs(knobs)


def test_known_knobs_pass_and_unknown_keys_drop() -> None:
    assert check_knobs({"recall_k": 7, "kg_hops": 2, "thread_id": "t", "window_k": None}) == {
        "recall_k": 7, "kg_hops": 2}  # fmt: skip


async def test_langserve_refuses_a_huge_recall_k_before_the_thread_exists(
    services: Services,
) -> None:
    user, key = await new_key(services)
    tid = f"knob-{uuid.uuid4().hex[:8]}"
    async with serve(services) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        res = await http.post(
            "/agent/invoke",
            headers={"Authorization": f"Bearer {key}"},
            json={"input": {"messages": [{"type": "human", "content": "hi"}]},
                  "config": {"configurable": {"thread_id": tid, "recall_k": 2**63}}},
        )  # fmt: skip
    assert res.status_code == 422, res.text
    assert "recall_k" in res.text
    with pytest.raises(NotFound):
        await services.thread_registry().get(tid, user)


def test_cli_refuses_an_out_of_bounds_window(pg_url: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mnemograph.cli", "chat", "--user", "knobs", "--thread", "k1",
         "--strategy", "window", "--window-k", "5000", "-m", "hello"],
        cwd=ROOT, env=cli_env(pg_url, tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "window_k" in proc.stderr and "error" in proc.stderr
