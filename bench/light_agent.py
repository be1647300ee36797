"""The LLM-free agent of the load sections (overhead, resources, faults): `KeywordAgent` from the
lab, with the benchmark's own lines. LiteLLM is not on the measured path (harness idle → Line →
the control plane → the POST), so these sections leave it out."""

from lab.keyword_agent import GOODBYE_WORD, TRANSFER_WORD, keyword_agent_factory

__all__ = ["CHAT_REPLY", "GOODBYE_TEXT", "GOODBYE_WORD", "TRANSFER_WORD", "build_tool_driven_agent"]

CHAT_REPLY = "Let me look into that for you, it will only take a moment while I check the details."
GOODBYE_TEXT = "Thanks for calling, have a great day. Goodbye!"

build_tool_driven_agent = keyword_agent_factory(chat_reply=CHAT_REPLY, goodbye=GOODBYE_TEXT)
