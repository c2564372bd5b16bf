"""Start a vLLM engine at one gpu_memory_utilization and say whether vLLM took it (docs/gpu.md: the doctor's
"largest fraction that fits now", tried for real):

    python3 benchmarks/gpu_fraction.py --model /root/minilm16 --fraction 0.23

Prints one line, ``STARTED <fraction> ...`` (exit 0) or ``REFUSED <fraction> <the error's first line>`` (exit 3).
The engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0), eager, 128 tokens.
"""

import argparse
import os
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--fraction", type=float, required=True)
args = ap.parse_args()
t0 = time.perf_counter()
try:
    from vllm import LLM

    llm = LLM(model=args.model, runner="pooling", dtype="float16", gpu_memory_utilization=args.fraction,
              enforce_eager=True, max_model_len=128, seed=0)
    out = llm.embed(["the doctor said this fraction fits"], use_tqdm=False)
    print(f"STARTED {args.fraction:.2f}: engine up and one text embedded ({len(out[0].outputs.embedding)} dims) "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)
    code = 0
except Exception as exc:  # noqa: BLE001 - what vLLM says is the result
    msg = " ".join(str(exc).split())[:400]
    print(f"REFUSED {args.fraction:.2f}: {type(exc).__name__}: {msg}", flush=True)
    code = 3
os._exit(code)  # skip vLLM's slow teardown
