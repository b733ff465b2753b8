"""Tool calls and JSON-schema `format` through the real ChatOllama client and the test server."""

from __future__ import annotations

from typing import Any, Literal

import ollama
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_ollama import ChatOllama
from ollama_server import OllamaTestServer, Reply, tool_messages, tool_names
from pydantic import BaseModel

pytestmark = pytest.mark.integration

How = Literal["astream", "ainvoke", "ainvoke, not streamed"]
HOWS: tuple[How, ...] = ("astream", "ainvoke", "ainvoke, not streamed")


def get_weather(city: str) -> str:
    """Look up today's weather in a city."""
    return "18 degrees"


class Forecast(BaseModel):
    city: str
    degrees: int


def weather_model(request: dict[str, Any]) -> Reply:
    """Call `get_weather` until the client sends its result back, then answer with it."""
    if results := tool_messages(request):
        return Reply(f"It is {results[-1]['content']} in Paris.")
    return Reply("Let me check.", tool_calls=[("get_weather", {"city": "Paris"})])


@pytest.fixture
def server():
    with OllamaTestServer(weather_model) as running:
        yield running


async def ask(model: Any, messages: list[BaseMessage], how: How) -> AIMessage:
    if how == "astream":
        chunks = [chunk async for chunk in model.astream(messages)]
        merged = chunks[0]
        for chunk in chunks[1:]:
            merged += chunk
        return merged
    if how == "ainvoke":  # ChatOllama streams on the wire and merges the chunks
        return await model.ainvoke(messages)
    return await model.ainvoke(messages, stream=False)


@pytest.mark.parametrize("how", HOWS)
async def test_tool_call_round_trip(server: OllamaTestServer, how: How) -> None:
    model = ChatOllama(model="test-model", base_url=server.url).bind_tools([get_weather])
    question = HumanMessage("What is the weather in Paris?")

    called = await ask(model, [question], how)
    assert called.content == "Let me check."
    (call,) = called.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"city": "Paris"})
    call_id = call["id"]
    assert call_id  # Ollama sends no id; the client mints one, which ToolMessage needs

    result = ToolMessage(get_weather("Paris"), tool_call_id=call_id)
    answered = await ask(model, [question, called, result], how)
    assert answered.content == "It is 18 degrees in Paris."
    assert answered.tool_calls == []

    first, second = server.chat_requests()
    assert first["stream"] is (how != "ainvoke, not streamed")
    assert tool_names(first) == tool_names(second) == ["get_weather"]
    offered = first["tools"][0]["function"]
    assert offered["description"] == "Look up today's weather in a city."
    assert offered["parameters"]["properties"] == {"city": {"type": "string"}}
    assert tool_messages(first) == []
    assert [m["content"] for m in tool_messages(second)] == ["18 degrees"]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool"]
    assert second["messages"][1]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    ]


@pytest.mark.parametrize("how", HOWS)
async def test_several_tool_calls_in_one_reply(server: OllamaTestServer, how: How) -> None:
    server.reply = lambda r: Reply(
        tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})]
    )
    model = ChatOllama(model="test-model", base_url=server.url).bind_tools([get_weather])
    called = await ask(model, [HumanMessage("Paris or Oslo?")], how)
    assert [c["args"] for c in called.tool_calls] == [{"city": "Paris"}, {"city": "Oslo"}]
    assert len({c["id"] for c in called.tool_calls}) == 2


async def test_show_says_the_model_can_call_tools(server: OllamaTestServer) -> None:
    shown = await ollama.AsyncClient(host=server.url).show("test-model")
    assert shown.capabilities == ["completion", "tools"]


@pytest.mark.parametrize(
    ("method", "sent_format"),
    [("json_schema", Forecast.model_json_schema()), ("json_mode", "json")],
)
async def test_structured_output(server: OllamaTestServer, method: str, sent_format: Any) -> None:
    server.reply = lambda r: Reply('{"city": "Paris", "degrees": 18}')
    model = ChatOllama(model="test-model", base_url=server.url)
    forecast = await model.with_structured_output(Forecast, method=method).ainvoke("Paris?")
    assert forecast == Forecast(city="Paris", degrees=18)
    (request,) = server.chat_requests()
    assert request["format"] == sent_format
    assert tool_names(request) == []
