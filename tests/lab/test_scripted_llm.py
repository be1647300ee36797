"""The scripted LLM endpoint, raw and driving the real Line LlmAgent through LiteLLM."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from line.agent import AgentEnv, TurnEnv
from line.events import AgentSendText, AgentToolCalled, AgentToolReturned, UserTextSent, UserTurnEnded
from line.llm_agent import LlmAgent, LlmConfig, loopback_tool
from line.llm_agent.tools.utils import ToolEnv

from lab.scripted_llm import LlmReply, ScriptedLlm, ToolCallSpec, split_text

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def user_turn(text: str) -> UserTurnEnded:
    said = UserTextSent(content=text)
    return UserTurnEnded(content=[said], history=[said])


def make_agent(llm: ScriptedLlm, tools: list[Any]) -> LlmAgent:
    config = LlmConfig(system_prompt="You are a test.", introduction=None, extra={"api_base": llm.api_base})
    return LlmAgent(model="openai/scripted", api_key="sk-test", tools=tools, config=config)


async def run_turn(agent: LlmAgent, event: UserTurnEnded) -> list[Any]:
    with anyio.fail_after(20):
        return [out async for out in agent.process(TurnEnv(AgentEnv()), event)]


async def sse(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """POST a streaming request; the decoded chunks (and a final "[DONE]" check)."""
    chunks: list[dict[str, Any]] = []
    async with client.stream("POST", url, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        assert line.startswith("data: ")
        chunks.append(json.loads(line[len("data: ") :]))
    return chunks


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


MESSAGES = [{"role": "user", "content": "hi"}]


# -- the real agent --------------------------------------------------------------------------------


async def test_drives_real_llm_agent_text_and_tool() -> None:
    ran: list[dict[str, Any]] = []

    @loopback_tool  # type: ignore[untyped-decorator]
    async def announce(ctx: ToolEnv, message: str, count: int) -> AsyncIterator[AgentSendText]:
        """Announce something to the caller."""
        ran.append({"message": message, "count": count})
        yield AgentSendText(text=f"<{message}>")

    reply = LlmReply(
        text="Sure, connecting you now.",
        tool_calls=(ToolCallSpec("announce", {"message": 'hold "on"', "count": 2}),),
    )
    async with ScriptedLlm([reply]) as llm:
        agent = make_agent(llm, [announce])
        outputs = await run_turn(agent, user_turn("put me through"))

    texts = [o.text for o in outputs if isinstance(o, AgentSendText)]
    assert "".join(texts[:-1]) == "Sure, connecting you now."
    assert len(texts) > 2  # streamed in several chunks
    assert texts[-1] == '<hold "on">'
    assert ran == [{"message": 'hold "on"', "count": 2}]
    called = [o for o in outputs if isinstance(o, AgentToolCalled)]
    assert [(c.tool_name, c.tool_args) for c in called] == [
        ("announce", {"message": 'hold "on"', "count": 2})
    ]

    (request,) = llm.requests  # a passthrough-only tool does not loop back
    assert request["model"] == "scripted" and request["stream"] is True
    assert request["messages"][0] == {"role": "system", "content": "You are a test."}
    assert request["messages"][-1] == {"role": "user", "content": "put me through"}
    assert [t["function"]["name"] for t in request["tools"]] == ["announce"]


async def test_loopback_tool_result_triggers_next_scripted_reply() -> None:
    @loopback_tool  # type: ignore[untyped-decorator]
    async def lookup(ctx: ToolEnv, city: str) -> str:
        """Look up the weather."""
        return f"sunny in {city}"

    replies = [
        LlmReply(tool_calls=(ToolCallSpec("lookup", {"city": "Oslo"}),)),
        LlmReply(text="It is sunny in Oslo."),
    ]
    async with ScriptedLlm(replies) as llm:
        outputs = await run_turn(make_agent(llm, [lookup]), user_turn("weather?"))
    assert "".join(o.text for o in outputs if isinstance(o, AgentSendText)) == "It is sunny in Oslo."
    returned = [o for o in outputs if isinstance(o, AgentToolReturned)]
    assert [r.result for r in returned] == ["sunny in Oslo"]
    assert len(llm.requests) == 2 and llm.remaining == 0
    tool_message = llm.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"] == "sunny in Oslo"


async def test_matcher_and_default_with_the_agent() -> None:
    replies = [LlmReply(text="Transferring.", when_user_says="HUMAN"), LlmReply(text="Hello!")]
    async with ScriptedLlm(replies, default=LlmReply(text="Sorry?")) as llm:
        agent = make_agent(llm, [])
        said = []
        for text in ["hi", "a human please", "anything"]:
            outputs = await run_turn(agent, user_turn(text))
            said.append("".join(o.text for o in outputs if isinstance(o, AgentSendText)))
    assert said == ["Hello!", "Transferring.", "Sorry?"]


# -- the wire format ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions"])
async def test_stream_format(client: httpx.AsyncClient, path: str) -> None:
    reply = LlmReply(
        text="One two  three.",
        tool_calls=(ToolCallSpec("a", {"x": 1}), ToolCallSpec("b", {"y": "zz" * 10})),
    )
    async with ScriptedLlm([reply]) as llm:
        url = llm.api_base.removesuffix("/v1") + path
        chunks = await sse(client, url, {"model": "m", "messages": MESSAGES})
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "m" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["role"] == "assistant"
    content = [d["content"] for d in deltas if "content" in d]
    assert content == ["One", " two", "  three."]
    calls: dict[int, dict[str, str]] = {}
    for d in deltas:
        for tc in d.get("tool_calls", []):
            if "id" in tc:
                assert tc["index"] not in calls and tc["function"]["arguments"] == ""
                calls[tc["index"]] = {"id": tc["id"], "name": tc["function"]["name"], "args": ""}
            else:
                calls[tc["index"]]["args"] += tc["function"]["arguments"]
    assert [(c["name"], json.loads(c["args"])) for c in calls.values()] == [
        ("a", {"x": 1}),
        ("b", {"y": "zz" * 10}),
    ]
    assert len({c["id"] for c in calls.values()}) == 2
    arg_pieces = [d for d in deltas if "tool_calls" in d and "id" not in d["tool_calls"][0]]
    assert len(arg_pieces) > 2  # arguments arrive in pieces
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * (len(chunks) - 1) + ["tool_calls"]


async def test_usage_chunk_on_request(client: httpx.AsyncClient) -> None:
    async with ScriptedLlm([LlmReply(text="Hi.")]) as llm:
        body = {"model": "m", "messages": MESSAGES, "stream_options": {"include_usage": True}}
        chunks = await sse(client, f"{llm.api_base}/chat/completions", body)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 1


async def test_non_stream_reply(client: httpx.AsyncClient) -> None:
    reply = LlmReply(text="Done.", tool_calls=(ToolCallSpec("end_call", {"reason": "bye"}),))
    async with ScriptedLlm([reply]) as llm:
        response = await client.post(
            f"{llm.api_base}/chat/completions", json={"model": "m", "messages": MESSAGES}
        )
        empty = await client.post(
            f"{llm.api_base}/chat/completions", json={"model": "m", "messages": MESSAGES}
        )
    (choice,) = response.json()["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Done."
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "end_call" and json.loads(call["function"]["arguments"]) == {
        "reason": "bye"
    }
    (choice,) = empty.json()["choices"]
    assert choice["finish_reason"] == "stop" and choice["message"] == {"role": "assistant", "content": None}


async def test_exhausted_script_streams_an_empty_stop(client: httpx.AsyncClient) -> None:
    async with ScriptedLlm([]) as llm:
        chunks = await sse(client, f"{llm.api_base}/chat/completions", {"model": "m", "messages": MESSAGES})
    assert [c["choices"][0]["delta"] for c in chunks] == [{"role": "assistant", "content": ""}, {}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_bad_request_body(client: httpx.AsyncClient) -> None:
    async with ScriptedLlm([LlmReply(text="x")]) as llm:
        response = await client.post(f"{llm.api_base}/chat/completions", content=b"nope")
        assert response.status_code == 400 and "error" in response.json()
        assert llm.requests == [] and llm.remaining == 1


async def test_ordered_consumption_records_requests(client: httpx.AsyncClient) -> None:
    replies = [LlmReply(text="first"), LlmReply(text="second")]
    async with ScriptedLlm(replies, default=LlmReply(text="default")) as llm:
        got = []
        for i in range(3):
            body = {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]}
            chunks = await sse(client, f"{llm.api_base}/chat/completions", body)
            got.append("".join(c["choices"][0]["delta"].get("content", "") for c in chunks))
    assert got == ["first", "second", "default"]
    assert [r["messages"][0]["content"] for r in llm.requests] == ["q0", "q1", "q2"]
    assert [r.text for r in llm.served] == got


# -- timing and lifecycle ------------------------------------------------------------------------------


async def test_delays_are_honoured(client: httpx.AsyncClient) -> None:
    reply = LlmReply(text="a b c d", first_token_delay_s=0.2, chunk_delay_s=0.05)
    async with ScriptedLlm([reply]) as llm:
        arrivals: list[float] = []
        started = time.perf_counter()
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        async with client.stream("POST", f"{llm.api_base}/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if '"content"' in line:
                    arrivals.append(time.perf_counter() - started)
    assert len(arrivals) == 4
    assert 0.2 <= arrivals[0] < 0.4
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(g >= 0.04 for g in gaps), gaps
    assert arrivals[-1] - arrivals[0] >= 0.15


async def test_shutdown_is_prompt_with_a_stream_in_flight(client: httpx.AsyncClient) -> None:
    finished = anyio.Event()
    received: list[str] = []

    async def consume(url: str) -> None:
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        try:
            async with client.stream("POST", url, json=body) as response:
                received.extend([line async for line in response.aiter_lines() if line])
        except httpx.HTTPError:
            pass
        finished.set()

    tasks_before = asyncio.all_tasks()
    async with anyio.create_task_group() as tg:
        async with ScriptedLlm([LlmReply(text="never", first_token_delay_s=60)]) as llm:
            tg.start_soon(consume, f"{llm.api_base}/chat/completions")
            await llm.wait_for_requests(1, timeout=5)
            closing = time.perf_counter()
        assert time.perf_counter() - closing < 0.5
        with anyio.fail_after(2):
            await finished.wait()
    assert "data: [DONE]" not in received
    assert asyncio.all_tasks() <= tasks_before  # uvicorn's request tasks were awaited
    with pytest.raises(RuntimeError):
        _ = llm.api_base


async def test_wait_for_requests_times_out() -> None:
    async with ScriptedLlm([]) as llm:
        with pytest.raises(TimeoutError):
            await llm.wait_for_requests(1, timeout=0.05)


@given(st.text())
def test_split_text_round_trips(text: str) -> None:
    pieces = split_text(text)
    assert "".join(pieces) == text
    assert all(piece.strip() for piece in pieces) or len(pieces) <= 1
