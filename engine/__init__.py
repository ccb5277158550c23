"""The shared LLM engine: one async interface, backends hf / vllm / openai."""
from engine.args import BACKENDS, EngineArgs, add_engine_args, build_engine
from engine.base import (
    ChatResult,
    Engine,
    EngineError,
    Message,
    Messages,
    RequestError,
    SamplingParams,
    Usage,
    track_usage,
)

__all__ = [
    "BACKENDS", "ChatResult", "Engine", "EngineArgs", "EngineError", "Message", "Messages", "RequestError",
    "SamplingParams", "Usage", "add_engine_args", "build_engine", "track_usage",
]
