"""Named transfer destinations (issue #18): VOX_TRANSFER_DESTINATIONS is checked at start-up, the
LLM sees only those names, and any other name is refused before anything is sent to VoxEngine."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from line.events import AgentSendText, AgentTurnEnded, AgentTurnStarted
from line.llm_agent import ToolEnv
from line.llm_agent.schema_converter import function_tool_to_litellm

from agent import prompt
from agent.call_control import CallControl
from agent.control_url import parse_control_url
from agent.destinations import Destination
from agent.settings import Settings, SettingsError
from agent.tools import telephony_tools
from agent.voxengine_client import VoxEngineClient
from lab import telephony
from lab.voxengine_emulator import VoxEngineEmulator

pytestmark = pytest.mark.anyio
KEY = {"OPENAI_API_KEY": "sk-test"}


def test_destinations_are_read_with_their_descriptions() -> None:
    env = {**KEY, "VOX_TRANSFER_DESTINATIONS": " sales = New orders  and pricing , billing,tech_2-a"}
    assert Settings.from_env(env).destinations == (
        Destination("sales", "New orders and pricing"),
        Destination("billing"),
        Destination("tech_2-a"),
    )
    assert Settings.from_env(KEY).destinations == ()


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("Sales", "'Sales' is not a destination name"),
        ("sales desk", "is not a destination name"),
        ("+15551234567", "is not a destination name"),  # names only: numbers stay in VoxEngine
        ("=orders", "'' is not a destination name"),
        ("a" * 65, "is not a destination name"),
        ("sales,sales=again", "sales is listed twice"),
        ("sales=" + "x" * 201, "the description of sales is over 200 characters"),
    ],
)
def test_a_bad_destination_list_is_one_clear_error(raw: str, says: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({**KEY, "VOX_TRANSFER_DESTINATIONS": raw})
    message = str(err.value)
    assert message.startswith("VOX_TRANSFER_DESTINATIONS: ") and says in message and "\n" not in message


def schema_of(tool: Any) -> dict[str, Any]:
    schema: dict[str, Any] = function_tool_to_litellm(tool)  # what LlmAgent sends the LLM
    return schema


async def transfer_tool(control: CallControl, destinations: tuple[Destination, ...]) -> Any:
    [_, transfer] = telephony_tools(control, destinations=destinations)
    return transfer


async def test_the_llm_sees_only_the_configured_names_and_unknown_ones_post_nothing() -> None:
    destinations = (Destination("sales", "New orders"), Destination("billing"))
    phones = [telephony.Destination("sales"), telephony.Destination("billing")]
    async with VoxEngineEmulator(destinations=phones) as emulator, emulator.client() as http:
        control = CallControl(target=parse_control_url(emulator.control_url()), client=VoxEngineClient(http))
        transfer = await transfer_tool(control, destinations)
        parameters = schema_of(transfer)["function"]["parameters"]
        assert parameters["properties"]["destination"]["enum"] == ["sales", "billing"]
        assert "sales: New orders; billing" in parameters["properties"]["destination"]["description"]
        assert "destination" in parameters["required"]

        said = [o async for o in transfer.func(ToolEnv(turn_env=None), summary="x", destination="+1555")]
        assert said == [AgentSendText(text=prompt.UNAVAILABLE)]
        assert control.pending == 0 and not control.outcomes  # nothing held, nothing sent

        async with anyio.create_task_group() as tg:
            tg.start_soon(control.run)
            said = [o async for o in transfer.func(ToolEnv(turn_env=None), summary="x", destination="sales")]
            assert said == [AgentSendText(text=prompt.TRANSFER_CONFIRMATION)]
            control.observe(AgentTurnStarted())
            control.observe(AgentTurnEnded())  # the confirmation played: the POST goes
            [request] = await emulator.wait_for_requests(1, timeout=5)
            control.close()
        assert json.loads(request.body)["destination"] == "sales"
        assert request.response == {
            "ok": True,
            "id": json.loads(request.body)["id"],
            "action": "call_transfer",
        }


async def test_without_destinations_the_tool_is_todays() -> None:
    async with VoxEngineEmulator() as emulator, emulator.client() as http:
        control = CallControl(target=None, client=VoxEngineClient(http))
        transfer = await transfer_tool(control, ())
        assert set(schema_of(transfer)["function"]["parameters"]["properties"]) == {"summary"}
