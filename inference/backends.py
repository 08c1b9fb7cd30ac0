"""Three ways to run one model turn, behind one async call: `await backend.complete(request)`.

- `vllm` (default): vLLM's async engine in this process. Every trajectory sends its own
  requests whenever it is ready, so continuous batching keeps the batch full; tensor and data
  parallel across a node's GPUs come from vLLM itself (a trajectory stays on one data-parallel
  rank so its prefix cache is reused turn after turn).
- `openai`: one or several OpenAI-compatible completions servers (e.g. `vllm serve` on each node);
  prompts are sent as token ids so a server cannot re-tokenize them differently (or add a BOS).
  Each request goes to the live server with the fewest requests in flight; a request whose server
  fails is sent to another one, so losing a server mid-run loses no trajectory.
- `transformers`: plain `generate`, one request at a time; slow, for checking the others.

Under greedy decoding all three give the same turns (tested on the tiny model).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Literal

from inference.processes import OrphanGuard

log = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """A request failed. `fatal`: the backend itself is gone, so every later request would
    fail too and the run must stop (nothing is recorded for it; re-running resumes)."""

    def __init__(self, message: str, fatal: bool = False):
        super().__init__(message)
        self.fatal = fatal


@dataclass
class BackendConfig:
    kind: Literal["vllm", "openai", "transformers"] = field(
        default="vllm", metadata={"help": "vllm (offline engine), openai (a server), transformers"})
    tensor_parallel_size: int = field(default=1, metadata={"help": "vllm: GPUs per model copy"})
    data_parallel_size: int = field(
        default=1, metadata={"help": "vllm: model copies on this node (8 on 8xA100 for a small model)"})
    gpu_memory_utilization: float = field(
        default=0.9, metadata={"help": "vllm: share of GPU memory (reference register_server.sh: 0.9)"})
    dtype: str = field(default="auto", metadata={"help": "vllm/transformers: auto, bfloat16, float32..."})
    enforce_eager: bool = field(default=False, metadata={"help": "vllm: no CUDA graphs / compilation"})
    max_model_len: int | None = field(default=None, metadata={"help": "context length; default: the model's"})
    max_num_seqs: int | None = field(
        default=None, metadata={"help": "vllm: sequences per batch (reference servers: 200); default vLLM's"})
    enable_prefix_caching: bool = field(
        default=True, metadata={"help": "vllm: reuse the KV cache of earlier turns"})
    cpu_kvcache_space_gib: int = field(
        default=1, metadata={"help": "vllm on CPU: KV cache GiB (sets VLLM_CPU_KVCACHE_SPACE if unset)"})
    base_url: str = field(default="http://localhost:8000/v1", metadata={"help": "openai: server URL"})
    base_urls: list[str] = field(default_factory=list, metadata={"help": (
        "openai: several servers (e.g. one `vllm serve` per node), used instead of base_url: each request "
        "goes to the live one with the fewest requests in flight, and is retried on another if its server fails")})
    server_retry_s: float = field(default=30.0, metadata={
        "help": "openai: a server that failed is probed again after this many seconds, and used again if it answers"})
    api_key: str = field(default="EMPTY", metadata={"help": "openai: key (vllm serve ignores it)"})
    served_model_name: str | None = field(
        default=None, metadata={"help": "openai: model name on the server; default: `model`"})
    request_timeout: float = field(default=600.0, metadata={"help": "openai: seconds per request"})
    device: str = field(default="cpu", metadata={"help": "transformers: torch device"})


@dataclass(frozen=True)
class TurnRequest:
    request_id: str
    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int  # -1 or 0: off
    seed: int
    stop: list[str]
    stop_token_ids: list[int]
    affinity: int = 0  # same value, same data-parallel rank (prefix cache reuse)


@dataclass(frozen=True)
class Completion:
    text: str  # stop strings and end-of-turn tokens left out
    n_tokens: int
    finish_reason: str  # "stop" (end of turn, eos, stop string) or "length"


def turn_text(tokenizer, token_ids: list[int], req: TurnRequest) -> tuple[str, str]:
    """(text, finish reason) of generated tokens, decoded in one piece: an end-of-turn token
    and whatever follows the first stop string are left out. vLLM's own text holds back a
    trailing incomplete UTF-8 character; this way every backend gives the same text."""
    finish = "length"
    if token_ids and token_ids[-1] in req.stop_token_ids:
        token_ids, finish = token_ids[:-1], "stop"
    text = tokenizer.decode(token_ids, skip_special_tokens=True)
    cuts = [i for i in (text.find(s) for s in req.stop) if i >= 0]
    if cuts:
        text, finish = text[:min(cuts)], "stop"
    return text, finish


class VLLMBackend:
    def __init__(self, cfg: BackendConfig, model: str, tokenizer_path: str | None, tokenizer, seed: int):
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        cpu = {}
        if current_platform.is_cpu():
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.cpu_kvcache_space_gib))
            # vLLM 0.32 on CPU: a seeded request whose prefill is split over steps crashes the
            # engine ("CPU Generator does not use offset"); whole prefills avoid the split.
            cpu = {"enable_chunked_prefill": False}
        args = AsyncEngineArgs(
            model=model, tokenizer=tokenizer_path, seed=seed, dtype=cfg.dtype,
            tensor_parallel_size=cfg.tensor_parallel_size, data_parallel_size=cfg.data_parallel_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization, enforce_eager=cfg.enforce_eager,
            max_model_len=cfg.max_model_len, enable_prefix_caching=cfg.enable_prefix_caching,
            disable_log_stats=True, **cpu, **({"max_num_seqs": cfg.max_num_seqs} if cfg.max_num_seqs else {}))
        before = OrphanGuard.snapshot()
        try:
            self.engine = AsyncLLM.from_engine_args(args)
        except Exception as exc:
            raise BackendError(f"vLLM could not start an engine for {model!r}: "
                               f"{type(exc).__name__}: {exc}", fatal=True) from exc
        self.guard = OrphanGuard(before)
        self.max_model_len = self.engine.model_config.max_model_len
        self.dp = cfg.data_parallel_size
        self.tokenizer = tokenizer

    async def complete(self, req: TurnRequest) -> Completion:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.exceptions import EngineDeadError

        params = SamplingParams(
            n=1, temperature=req.temperature, top_p=req.top_p, top_k=req.top_k, seed=req.seed,
            max_tokens=req.max_tokens, stop=req.stop, stop_token_ids=req.stop_token_ids,
            output_kind=RequestOutputKind.FINAL_ONLY)
        rank = req.affinity % self.dp if self.dp > 1 else None
        final = None
        try:
            async for output in self.engine.generate(TokensPrompt(prompt_token_ids=req.prompt_ids),
                                                     params, req.request_id, data_parallel_rank=rank):
                final = output
        except EngineDeadError as exc:
            raise BackendError(f"the vLLM engine died: {exc}", fatal=True) from exc
        except Exception as exc:
            cause = exc.__cause__ or exc
            raise BackendError(f"vLLM failed request {req.request_id}: "
                               f"{type(cause).__name__}: {cause}") from exc
        if final is None or not final.outputs:
            raise BackendError(f"vLLM returned nothing for request {req.request_id}")
        out = final.outputs[0]
        text, finish = turn_text(self.tokenizer, list(out.token_ids), req)
        return Completion(text, len(out.token_ids), finish)

    def close(self) -> None:
        self.engine.shutdown()
        del self.engine  # its __del__ shuts down again: now, not at interpreter exit
        self.guard.release()


@dataclass(eq=False)
class Endpoint:
    """One server: its client, its requests in flight, and whether it is usable."""

    url: str
    client: object
    in_flight: int = 0
    up: bool = True


class OpenAIBackend:
    """Spreads requests over the servers by least outstanding requests (a fast server takes more,
    a slow or busy one fewer; ties go to the trajectory's own server, for its prefix cache)."""

    def __init__(self, cfg: BackendConfig, model: str, tokenizer):
        from openai import AsyncOpenAI, Timeout

        urls = cfg.base_urls or [cfg.base_url]
        if len(set(urls)) < len(urls):
            raise BackendError(f"backend.base_urls names a server twice: {urls}", fatal=True)
        # One server: the client's own retries (it has nowhere else to go). Several: fail over at once.
        retries = {"max_retries": 0} if len(urls) > 1 else {}
        timeout = Timeout(cfg.request_timeout, connect=min(cfg.request_timeout, 10.0))  # a dead host: 10 s
        self.endpoints = [Endpoint(url, AsyncOpenAI(base_url=url, api_key=cfg.api_key, timeout=timeout, **retries))
                          for url in urls]
        self.tokenizer = tokenizer
        self.model = cfg.served_model_name or model
        self.max_model_len = cfg.max_model_len
        self.retry_s = cfg.server_retry_s
        self._probes: set[asyncio.Task] = set()

    async def _models(self, ep: Endpoint) -> dict:
        return {m.id: m for m in (await ep.client.models.list()).data}

    async def start(self) -> None:
        """Check that the servers are up and serve our model; read the context length. A server that
        does not answer is left out (and probed again later) as long as one does."""
        import openai

        lengths, down = [], []
        for ep in self.endpoints:
            try:
                served = await self._models(ep)
            except openai.OpenAIError as exc:
                down.append(f"{ep.url}: {exc}")
                self._mark_down(ep)
                continue
            if self.model not in served:
                raise BackendError(f"the server at {ep.url} serves {sorted(served)}, not "
                                   f"{self.model!r}; set backend.served_model_name", fatal=True)
            lengths.append(getattr(served[self.model], "max_model_len", None))
        if len(down) == len(self.endpoints):
            raise BackendError("no OpenAI-compatible server answers: " + "; ".join(down), fatal=True)
        for line in down:
            log.warning("left out for now: %s", line)
        if self.max_model_len is None and None not in lengths:
            self.max_model_len = min(lengths)

    def _mark_down(self, ep: Endpoint) -> None:
        if ep.up:  # else its probe is running already
            ep.up = False
            task = asyncio.get_running_loop().create_task(self._probe(ep))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)

    async def _probe(self, ep: Endpoint) -> None:
        """Until the server answers again; one light request, so a dead server costs no real ones."""
        import openai

        while True:
            await asyncio.sleep(self.retry_s)
            try:
                if self.model in await self._models(ep):
                    log.warning("server %s answers again", ep.url)
                    ep.up = True
                    return
            except openai.OpenAIError:
                continue

    def _pick(self, req: TurnRequest, tried: set[int]) -> Endpoint | None:
        n = len(self.endpoints)
        live = [i for i, ep in enumerate(self.endpoints) if ep.up and i not in tried]
        if not live:
            return None
        return self.endpoints[min(live, key=lambda i: (self.endpoints[i].in_flight, (i - req.affinity) % n))]

    async def complete(self, req: TurnRequest) -> Completion:
        import openai

        extra = {"top_k": req.top_k, "stop_token_ids": req.stop_token_ids, "return_token_ids": True,
                 "skip_special_tokens": True, "include_stop_str_in_output": False}
        tried: set[int] = set()
        failures: list[str] = []
        while (ep := self._pick(req, tried)) is not None:
            tried.add(self.endpoints.index(ep))
            ep.in_flight += 1
            try:
                res = await ep.client.completions.create(
                    model=self.model, prompt=req.prompt_ids, max_tokens=req.max_tokens,
                    temperature=req.temperature, top_p=req.top_p, seed=req.seed, stop=req.stop,
                    n=1, extra_body=extra)
            except (openai.AuthenticationError, openai.NotFoundError) as exc:
                raise BackendError(f"server {ep.url}: {exc}", fatal=True) from exc
            except openai.APIConnectionError as exc:  # gone, or no answer in time: try another
                failures.append(f"{ep.url}: {type(exc).__name__}: {exc}")
                log.warning("server %s failed request %s (%s); trying another", ep.url, req.request_id, exc)
                self._mark_down(ep)
                continue
            except openai.InternalServerError as exc:  # the server's fault, maybe only this time
                failures.append(f"{ep.url}: HTTP {exc.status_code}: {exc.message}")
                continue
            except openai.APIStatusError as exc:  # the request's own fault: another server would refuse it too
                raise BackendError(f"server {ep.url} failed request {req.request_id}: "
                                   f"HTTP {exc.status_code}: {exc.message}") from exc
            finally:
                ep.in_flight -= 1
            choice = res.choices[0]
            n_tokens = res.usage.completion_tokens if res.usage else 0
            token_ids = (choice.model_extra or {}).get("token_ids")  # vLLM's server sends them
            text = choice.text if token_ids is None else turn_text(self.tokenizer, token_ids, req)[0]
            return Completion(text, n_tokens, choice.finish_reason or "stop")
        if not any(ep.up for ep in self.endpoints):
            raise BackendError("every server failed: " + "; ".join(failures), fatal=True)
        raise BackendError(f"request {req.request_id} failed on every server: " + "; ".join(failures))

    def close(self) -> None:
        """The HTTP pools are closed with the event loop; the probes end with it."""
        for task in self._probes:
            task.cancel()


class TransformersBackend:
    """One `generate` call at a time, in a worker thread so the event loop keeps going."""

    def __init__(self, cfg: BackendConfig, model: str, tokenizer):
        import torch
        from transformers import AutoModelForCausalLM

        dtype = "auto" if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
        try:
            self.model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(cfg.device).eval()
        except (OSError, ValueError) as exc:
            raise BackendError(f"transformers could not load {model!r}: {exc}", fatal=True) from exc
        self.tokenizer, self.device = tokenizer, cfg.device
        self.max_model_len = cfg.max_model_len or getattr(self.model.config, "max_position_embeddings", None)
        self._lock = threading.Lock()

    async def complete(self, req: TurnRequest) -> Completion:
        try:
            return await asyncio.to_thread(self._generate, req)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise BackendError(f"transformers failed request {req.request_id}: {exc}") from exc

    def _generate(self, req: TurnRequest) -> Completion:
        import torch

        sampling = {"do_sample": False}
        if req.temperature > 0:
            sampling = {"do_sample": True, "temperature": req.temperature, "top_p": req.top_p,
                        "top_k": max(req.top_k, 0)}
        ids = torch.tensor([req.prompt_ids], device=self.device)
        with self._lock, torch.no_grad():
            if req.temperature > 0:
                torch.manual_seed(req.seed)
            out = self.model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=req.max_tokens,
                eos_token_id=req.stop_token_ids, pad_token_id=self.tokenizer.pad_token_id,
                stop_strings=req.stop or None, tokenizer=self.tokenizer, **sampling)
        tokens = out[0, len(req.prompt_ids):].tolist()
        text, finish = turn_text(self.tokenizer, tokens, req)
        return Completion(text, len(tokens), finish)

    def close(self) -> None:
        self.model = None


def make_backend(cfg: BackendConfig, model: str, tokenizer_path: str | None, tokenizer, seed: int):
    if cfg.kind == "vllm":
        return VLLMBackend(cfg, model, tokenizer_path, tokenizer, seed)
    if cfg.kind == "openai":
        return OpenAIBackend(cfg, model, tokenizer)
    return TransformersBackend(cfg, model, tokenizer)
