"""Korean tokenization (kiwipiepy's model) and secrets in URLs."""

from __future__ import annotations

import importlib.metadata
import time

from evolve.doctor._base import Check, CheckResult

__all__ = ["KoreanCheck", "SecretsCheck"]


class KoreanCheck(Check):
    name = "korean"

    def run(self, ctx) -> CheckResult:
        users = ctx.distinct(lambda c: c.sparse.tokenizer if c.sparse.tokenizer in ("korean", "auto") else None)
        if not users:
            return self.skip("no config of this night uses sparse.tokenizer korean (or auto)")
        fix = "pip install kiwipiepy kiwipiepy-model (NixOS: part of the evolve package)"
        try:
            t0 = time.perf_counter()
            from kiwipiepy import Kiwi

            tokens = Kiwi().tokenize("형태소 분석기가 준비되었는지 확인합니다")
            took = time.perf_counter() - t0
        except ImportError as err:
            return self.fail(f"kiwipiepy does not import ({err})", "kiwipiepy and its model", fix)
        except Exception as err:  # noqa: BLE001 - a missing or broken model: one line
            msg = " ".join(f"{type(err).__name__}: {err}".split())[:300]
            return self.fail(f"kiwipiepy's model does not load: {msg}", "kiwipiepy-model installed", fix)
        versions = []
        for dist in ("kiwipiepy", "kiwipiepy-model"):
            try:
                versions.append(f"{dist} {importlib.metadata.version(dist)}")
            except importlib.metadata.PackageNotFoundError:
                versions.append(f"{dist} ?")
        return self.ok(f"{', '.join(versions)}: model loaded and a Korean sentence tokenized "
                       f"({len(tokens)} morphemes) in {took:.1f} s", "kiwipiepy's model, for "
                       + ", ".join(sorted(users)), tokenizers=sorted(users))


class SecretsCheck(Check):
    """No password inside a URL: the rule `evolve` applies to --storage and friends (:mod:`evolve.secrets`). A URL
    on a command line is readable in ``ps``, in unit files and in the Nix store."""

    name = "secrets"

    def run(self, ctx) -> CheckResult:
        from evolve.secrets import has_inline_password, redact_url

        urls = {"--storage": ctx.storage_url, "--tracking-uri": ctx.tracking_uri, "--cache-url": ctx.cache_url,
                "--feedback-url": ctx.feedback_url}
        for ep in ctx.llms:
            urls.setdefault("--llm-url", ep.base_url)
        for _label, cfg in ctx.night_configs:
            urls.setdefault("embedding.base_url", cfg.embedding.base_url)
            urls.setdefault("rerank.base_url", cfg.rerank.base_url)
            answer = getattr(cfg, "answer", None)
            urls.setdefault("answer.base_url", getattr(answer, "base_url", None))
        bad = {k: redact_url(v) for k, v in urls.items() if v and has_inline_password(v)}
        checked = sorted(k for k, v in urls.items() if v)
        if bad:
            return self.fail("a password inside " + ", ".join(f"{k} ({v})" for k, v in bad.items()),
                             "URLs without credentials",
                             "take the password out of the URL: PGPASSWORD or a libpq passfile (PGPASSFILE) for "
                             "PostgreSQL, MLFLOW_TRACKING_USERNAME/PASSWORD for MLflow, an *_api_key_env variable for "
                             "endpoints (NixOS: the service's environmentFile)", urls=sorted(bad))
        return self.ok(f"no password in {len(checked)} URL(s) ({', '.join(checked)})", "URLs without credentials",
                       urls=checked)
