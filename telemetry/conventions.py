"""Names in a call's trace: span names and attribute keys (docs/tracing.md has the table).

OpenTelemetry semantic conventions are used where one exists (`error.type`, the GenAI
`execute_tool` span, the stable HTTP client span and attributes); everything specific to this
project lives under `vox.`.
"""

from __future__ import annotations

from typing import Final

# ---- span names (low cardinality: the action kind and the tool name are small, fixed sets) ----
CALL_SPAN: Final = "call"
AGENT_TURN_SPAN: Final = "agent.turn"
USER_TURN_SPAN: Final = "user.turn"
TOOL_SPAN: Final = "execute_tool"  # + " {tool name}" (GenAI semconv span name)
ACTION_SPAN: Final = "control"  # + " {action kind}"
HTTP_SPAN: Final = "POST"  # HTTP client semconv: the method

# ---- OpenTelemetry semantic conventions ----
ERROR_TYPE: Final = "error.type"
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_REQUEST_RESEND_COUNT: Final = "http.request.resend_count"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
NETWORK_PEER_ADDRESS: Final = "network.peer.address"
NETWORK_PEER_PORT: Final = "network.peer.port"
NETWORK_PROTOCOL_VERSION: Final = "network.protocol.version"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
URL_FULL: Final = "url.full"

# ---- the call (root span) ----
CALL_ID: Final = "vox.call.id"
CALL_AGENT_CALL_ID: Final = "vox.call.agent_call_id"
CALL_CALLER: Final = "vox.call.caller"  # masked: last 2 characters only
CALL_CALLEE: Final = "vox.call.callee"  # masked: last 2 characters only
CALL_AGENT_TURNS: Final = "vox.call.agent_turns"
CALL_USER_TURNS: Final = "vox.call.user_turns"
CALL_ACTIONS: Final = "vox.call.actions"
CONTROL_HOST: Final = "vox.control.host"
CONTROL_FINGERPRINT: Final = "vox.control.fingerprint"  # short hash of the control URL
CONTROL_REFUSAL: Final = "vox.control.refusal"  # why the control URL was refused, if it was

# ---- turns ----
TURN_SEQ: Final = "vox.turn.seq"  # 1-based; agent turns are numbered as the flush policy does
TURN_CHARACTERS: Final = "vox.turn.characters"
TURN_INTERRUPTED: Final = "vox.turn.interrupted"  # agent turn: a user turn started while it was open
TURN_BARGE_IN: Final = "vox.turn.barge_in"  # user turn: it started while an agent turn was open
TURN_END: Final = "vox.turn.end"  # "idle", "next_turn", "call_ended"

# ---- tools ----
TOOL_ARGS_SIZE: Final = "vox.tool.args_size"  # bytes of the JSON arguments (never the arguments)

# ---- control actions ----
ACTION_ID: Final = "vox.action.id"  # also the X-Idempotency-Key of every attempt
ACTION_KIND: Final = "vox.action.kind"
ACTION_CARRIER_TURN: Final = "vox.action.carrier_turn"  # agent turn whose end releases it
ACTION_RELEASE_REASON: Final = "vox.action.release_reason"
ACTION_OUTCOME: Final = "vox.action.outcome"  # "delivered", "failed", "cancelled"
ACTION_REASON: Final = "vox.action.reason"  # e.g. "accepted", "deadline_exceeded:http_503"
ACTION_TELEPHONY: Final = "vox.action.telephony"  # a transfer on the phone: "connected", "failed"
ACTION_TELEPHONY_REASON: Final = "vox.action.telephony_reason"  # e.g. "busy", "no_answer"
ACTION_ATTEMPTS: Final = "vox.action.attempts"
# VoxEngine's playout offset with the outcome (ms, or "unknown" when it reported null).
ACTION_PLAYOUT_OFFSET_MS: Final = "vox.playout_offset_ms"

# ---- event attributes ----
EVENT_REASON: Final = "vox.reason"
EVENT_ATTEMPT: Final = "vox.attempt"
EVENT_RETRY_WAIT_S: Final = "vox.retry.wait_s"

# ---- link attributes ----
LINK_TYPE: Final = "vox.link.type"  # "released_by" (action → turn), "requested" (tool → action)
