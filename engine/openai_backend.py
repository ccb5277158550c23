"""The `openai` backend: any OpenAI-compatible server (`vllm serve`, a Modal deployment, an API).

Endpoints come from a YAML file (see configs/model_api_config.yaml). Retries with exponential backoff
on 408/409/429/5xx, connection errors and timeouts are the `openai` client's own (`max_retries`);
it also honours a server's `Retry-After` / `retry-after-ms` header. What still fails after that is
classified (`_classify`): a RequestError fails one sample, an EngineError ends the run.

With `--use_modal_batch` the one endpoint is the Modal deployment of modal/launch_modal.py: its URL is
`--modal_url`, else $AGENTARK_MODAL_URL, else looked up by app name with the `modal` package (imported
only then). Its start check waits out a cold start (Modal starts a container and vLLM loads the model).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import yaml

from engine.args import EngineArgs
from engine.base import ChatResult, Engine, EngineError, Message, RequestError, SamplingParams

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
ENDPOINT_KEYS = ("model_name", "base_url", "api_key_env", "per_request_seed")
# vLLM and most local servers accept any key; the client refuses to start without one.
PLACEHOLDER_API_KEY = "EMPTY"
# start() must fail fast on a dead endpoint, not sit through the request timeout and retries.
START_CHECK_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 10.0
# HTTP statuses about one request's content (a prompt too long for the context, a bad parameter value):
# they fail that sample only, with the server's message in its record.
REQUEST_ERROR_STATUSES = frozenset({400, 413, 422})
# A Modal deployment (modal/launch_modal.py): where its URL may be given, the web function's name, and
# the variable holding the key its server requires (the Modal secret sets the same name for vLLM).
MODAL_URL_ENV = "AGENTARK_MODAL_URL"
MODAL_SERVE_FUNCTION = "serve"
MODAL_API_KEY_ENV = "VLLM_API_KEY"
# While a Modal container starts, GET /models times out or gets 5xx from Modal's proxy: poll this often
# (each probe waiting up to MODAL_PROBE_TIMEOUT_S), for at most --request_timeout seconds in all.
MODAL_POLL_S = 5.0
MODAL_PROBE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Endpoint:
    """One server that serves `model_name`; `api_key_env` names the env var holding its key (None: no key).

    `per_request_seed` False: requests carry no `seed` (a CPU `vllm serve` dies on seeded sampling).
    """

    model_name: str
    base_url: str
    api_key_env: str | None = None
    per_request_seed: bool = True


def resolve_config_path(path: str | os.PathLike[str]) -> Path:
    """The config file as given, or (for a relative path missing from the working dir) under the repo root."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    from_root = REPO_ROOT / candidate
    return from_root if from_root.exists() else candidate


def load_endpoints(path: str | os.PathLike[str]) -> list[Endpoint]:
    """Read every endpoint of a model API config; any malformed entry is a one-line EngineError."""
    config_path = resolve_config_path(path)
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineError(f"{config_path}: model API config not found (set --model_api_config)") from None
    except yaml.MarkedYAMLError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else "?"
        raise EngineError(f"{config_path}:{line}: invalid YAML: {err.problem}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), list):
        raise EngineError(f"{config_path}: expected a top-level 'models:' list of "
                          "{model_name, base_url, api_key_env} entries")
    unknown_top = set(raw) - {"models"}
    if unknown_top:
        raise EngineError(f"{config_path}: unknown top-level key(s) {', '.join(sorted(map(str, unknown_top)))}; "
                          "only 'models' is read")
    endpoints = []
    for index, entry in enumerate(raw["models"]):
        where = f"{config_path}: models[{index}]"
        if not isinstance(entry, dict):
            raise EngineError(f"{where}: expected a mapping with keys {', '.join(ENDPOINT_KEYS)}")
        unknown = set(entry) - set(ENDPOINT_KEYS)
        if unknown:
            raise EngineError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                              f"allowed: {', '.join(ENDPOINT_KEYS)}")
        for key in ("model_name", "base_url"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise EngineError(f"{where}: missing or empty field '{key}'")
        api_key_env = entry.get("api_key_env")
        if api_key_env is not None and (not isinstance(api_key_env, str) or not api_key_env.strip()):
            raise EngineError(f"{where}: 'api_key_env' must be the name of an environment variable")
        per_request_seed = entry.get("per_request_seed", True)
        if not isinstance(per_request_seed, bool):
            raise EngineError(f"{where}: 'per_request_seed' must be true or false, got {per_request_seed!r}")
        endpoints.append(Endpoint(entry["model_name"].strip(), entry["base_url"].strip().rstrip("/"),
                                  api_key_env.strip() if api_key_env else None, per_request_seed))
    return endpoints


def endpoints_for_model(path: str | os.PathLike[str], model_name: str) -> list[Endpoint]:
    """The endpoints serving `model_name`; an unknown name is an error listing the known ones."""
    endpoints = load_endpoints(path)
    chosen = [e for e in endpoints if e.model_name == model_name]
    if not chosen:
        known = sorted({e.model_name for e in endpoints})
        raise EngineError(f"model {model_name!r} is not in {resolve_config_path(path)}; "
                          f"known models: {', '.join(known) if known else '(none)'}")
    return chosen


def modal_endpoint(model_name: str, url: str) -> Endpoint:
    """The endpoint of a Modal deployment at `url` (its root or its /v1); VLLM_API_KEY sent when set."""
    base_url = url.strip().rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise EngineError(f"--modal_url {url!r}: expected the deployment's http(s) URL "
                          "(https://<workspace>--<app>-serve.modal.run)")
    if not base_url.endswith("/v1"):
        base_url += "/v1"
    # Without the variable the placeholder key goes: a deployment without a key secret accepts any.
    return Endpoint(model_name, base_url, MODAL_API_KEY_ENV if os.environ.get(MODAL_API_KEY_ENV) else None)


async def lookup_modal_url(app_name: str) -> str:
    """The web URL of the deployed app's serve function, asked of Modal (needs `modal` and its token)."""
    try:
        import modal
    except ImportError:
        modal = None
    # Without the package, the repository's own modal/ folder imports as an empty namespace package.
    if modal is None or not hasattr(modal, "Function"):
        raise EngineError("--use_modal_batch: give --modal_url (or set AGENTARK_MODAL_URL), or `pip install modal` "
                          "so the deployment's URL can be looked up")
    failure = None
    try:
        url = await modal.Function.from_name(app_name, MODAL_SERVE_FUNCTION).get_web_url.aio()
    except (modal.exception.Error, OSError) as err:
        text = str(err).strip().splitlines()
        failure = (f"--use_modal_batch: Modal app {app_name!r} not found or not reachable "
                   f"({type(err).__name__}: {text[0] if text else ''}); deploy it with `modal deploy "
                   f"modal/launch_modal.py` (AGENTARK_MODAL_APP={app_name}), check `modal token new`, "
                   "or give --modal_url")
    if failure:
        raise EngineError(failure)
    if not url:
        raise EngineError(f"--use_modal_batch: Modal app {app_name!r} has no web URL for {MODAL_SERVE_FUNCTION!r}")
    return url


def _still_starting(err: openai.APIError) -> bool:
    """Whether a failed probe of a Modal deployment may just be its cold start."""
    if isinstance(err, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    return isinstance(err, openai.APIStatusError) and err.status_code >= 500


class _Slot:
    """An endpoint's client and its count of requests in flight (for least-loaded routing)."""

    def __init__(self, endpoint: Endpoint, api_key: str, client: openai.AsyncOpenAI):
        self.endpoint = endpoint
        self.api_key = api_key
        self.client = client
        self.in_flight = 0


class OpenAIEngine(Engine):
    """Chat and text completion through OpenAI-compatible endpoints, bounded concurrency, client retries."""

    backend_name = "openai"

    def __init__(self, model_name: str, args: EngineArgs):
        super().__init__(model_name, args.sampling_defaults())
        if args.max_concurrency < 1:
            raise EngineError(f"--max_concurrency must be at least 1, got {args.max_concurrency}")
        self.args = args
        self._modal = args.use_modal_batch
        if self._modal:
            url = args.modal_url or os.environ.get(MODAL_URL_ENV)
            # No URL: start() asks Modal (a network call, made inside the event loop).
            self.endpoints = [modal_endpoint(model_name, url)] if url else []
        else:
            self.endpoints = endpoints_for_model(args.model_api_config, model_name)
        keys = [self._api_key(e) for e in self.endpoints]  # every key checked before any client opens
        self._slots = [self._open_slot(e, key) for e, key in zip(self.endpoints, keys)]
        self._semaphore = asyncio.Semaphore(args.max_concurrency)
        self._next_slot = 0

    def _open_slot(self, endpoint: Endpoint, api_key: str) -> _Slot:
        timeout = openai.Timeout(self.args.request_timeout, connect=min(CONNECT_TIMEOUT_S, self.args.request_timeout))
        return _Slot(endpoint, api_key, openai.AsyncOpenAI(api_key=api_key, base_url=endpoint.base_url,
                                                           max_retries=self.args.max_retries, timeout=timeout))

    @staticmethod
    def _api_key(endpoint: Endpoint) -> str:
        # An endpoint without api_key_env gets the placeholder, never OPENAI_API_KEY from the
        # environment: a key meant for one provider must not leak to a local or third-party server.
        if endpoint.api_key_env is None:
            return PLACEHOLDER_API_KEY
        key = os.environ.get(endpoint.api_key_env)
        if not key:
            raise EngineError(f"environment variable {endpoint.api_key_env} is not set "
                              f"(the API key for {endpoint.base_url}, model {endpoint.model_name})")
        return key

    def _redact(self, text: str) -> str:
        for slot in self._slots:
            if slot.api_key != PLACEHOLDER_API_KEY:
                text = text.replace(slot.api_key, "***")
        return " ".join(text.split())[:300]

    def _describe(self, err: openai.APIError) -> str:
        if isinstance(err, openai.APITimeoutError):
            return "request timed out"
        if isinstance(err, openai.APIConnectionError):
            return "connection failed (is the server running, and is base_url right?)"
        if isinstance(err, openai.APIStatusError):
            # The server's own error text (the client's `message` adds an "Error code: N - " prefix).
            body = err.body if isinstance(err.body, dict) else {}
            detail = body.get("message") if isinstance(body.get("message"), str) else err.message
            return f"HTTP {err.status_code}: {self._redact(detail)}"
        return self._redact(str(err))

    def _pick_slot(self) -> _Slot:
        # Least in-flight first; among equals, start scanning after the last pick so ties rotate.
        count = len(self._slots)
        order = [self._slots[(self._next_slot + i) % count] for i in range(count)]
        slot = min(order, key=lambda s: s.in_flight)
        self._next_slot = (self._slots.index(slot) + 1) % count
        return slot

    async def start(self) -> None:
        """Check every endpoint answers GET /models and serves this model; one-line EngineError if not."""
        if not self._slots:  # --use_modal_batch without a URL
            url = await lookup_modal_url(self.args.modal_app)
            logger.info("Modal app %s serves at %s", self.args.modal_app, url)
            endpoint = modal_endpoint(self.model_name, url)
            self.endpoints = [endpoint]
            self._slots = [self._open_slot(endpoint, self._api_key(endpoint))]
        await asyncio.gather(*(self._check(slot) for slot in self._slots))

    async def _check(self, slot: _Slot) -> None:
        url = slot.endpoint.base_url
        # A Modal deployment may be scaled to zero: the first probe starts a container and waits for vLLM.
        wait_s = self.args.request_timeout if self._modal else 0.0
        probe_timeout = min(MODAL_PROBE_TIMEOUT_S, self.args.request_timeout) if self._modal else START_CHECK_TIMEOUT_S
        probe = slot.client.with_options(max_retries=0, timeout=probe_timeout)
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            failure = None
            try:
                page = await probe.models.list()
            except openai.APIError as err:
                failure = f"openai endpoint {url} is not usable: {self._describe(err)}"
                if self._modal and _still_starting(err) and time.monotonic() < deadline:
                    if not told:
                        told = True
                        logger.info("waiting for the Modal deployment at %s to start (a cold start loads the "
                                    "model; up to --request_timeout %.0f s)", url, wait_s)
                    await asyncio.sleep(MODAL_POLL_S)
                    continue
            break
        if failure:
            # Raised outside the except block so no chained exception carries the server's raw reply.
            raise EngineError(failure)
        served = [m.id for m in page.data]
        if served and self.model_name not in served:
            shown = ", ".join(served[:10]) + (" ..." if len(served) > 10 else "")
            raise EngineError(f"openai endpoint {url} does not serve model {self.model_name!r}; it serves: {shown}")

    async def _chat(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        response = await self._send("chat", {"messages": messages}, params)
        choices = sorted(response.choices, key=lambda c: c.index)
        return _result(response, [c.message.content or "" for c in choices], choices)

    async def _complete(self, prompt: str, params: SamplingParams) -> ChatResult:
        response = await self._send("completion", {"prompt": prompt}, params)
        choices = sorted(response.choices, key=lambda c: c.index)
        return _result(response, [c.text or "" for c in choices], choices)

    async def _send(self, kind: str, payload: dict[str, Any], params: SamplingParams) -> Any:
        """One request (`kind` chat or completion) on the least-loaded endpoint, errors classified."""
        request: dict[str, Any] = {
            "model": self.model_name,
            **payload,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "n": params.n,
        }
        if params.stop:
            request["stop"] = list(params.stop)
        failure: Exception | None = None
        async with self._semaphore:
            slot = self._pick_slot()
            # The seed is per endpoint: one that cannot take seeded requests gets none (it is seeded once).
            if params.seed is not None and slot.endpoint.per_request_seed:
                request["seed"] = params.seed
            slot.in_flight += 1
            try:
                api = slot.client.chat.completions if kind == "chat" else slot.client.completions
                response = await api.create(**request)
            except openai.APIError as err:
                failure = self._classify(err, slot)
            finally:
                slot.in_flight -= 1
        if failure:
            # Raised outside the except block so no chained exception carries the server's raw reply.
            raise failure
        return response

    def _classify(self, err: openai.APIError, slot: _Slot) -> Exception:
        """A RequestError fails one sample; an EngineError (the server or the setup is unusable) ends the run.

        The client has already retried 408/409/429/5xx, connection errors and timeouts by then.
        """
        message = f"openai endpoint {slot.endpoint.base_url} failed for model {self.model_name}: {self._describe(err)}"
        if isinstance(err, openai.APITimeoutError):
            # A request that times out on every retry is most often that request's own long generation
            # (or its place behind a long queue); a dead server refuses connections, which stays fatal.
            return RequestError(message)
        if isinstance(err, openai.APIStatusError) and err.status_code in REQUEST_ERROR_STATUSES:
            return RequestError(message)
        # Connection refused, 401/403 (key), 404 (model or URL), 429 after retries (quota or rate limit)
        # and 5xx after retries (the server keeps failing) would fail every later request too: stop the
        # run with one line; rerunning the same command resumes where it stopped.
        return EngineError(message)

    async def close(self) -> None:
        """Close every endpoint's HTTP client."""
        await asyncio.gather(*(slot.client.close() for slot in self._slots))


def _result(response: Any, texts: list[str], choices: list[Any]) -> ChatResult:
    usage = response.usage
    return ChatResult(
        texts=texts,
        prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
        completion_tokens=(usage.completion_tokens or 0) if usage else 0,
        finish_reasons=[c.finish_reason or "" for c in choices],
    )
