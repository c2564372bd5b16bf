"""Hold a fraction of GPU 0's memory in a second process until killed (the stand-in for Ollama or another
service on the card, used by benchmarks/gpu_night.sh to make the doctor's memory check fail for real).

    python3 benchmarks/gpu_holder.py --fraction 0.7 --ready /tmp/holder.ready

Allocates with ``torch.empty`` (cudaMalloc, not managed memory), writes a byte into every MiB so the pages are
real, writes its pid and the bytes held to ``--ready``, then sleeps.
"""

import argparse
import json
import os
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--fraction", type=float, required=True, help="of the GPU's total memory")
ap.add_argument("--ready", required=True)
args = ap.parse_args()
free, total = torch.cuda.mem_get_info(0)
want = int(total * args.fraction)
buf = torch.empty(want, dtype=torch.uint8, device="cuda:0")
buf[:: 1 << 20] = 1
torch.cuda.synchronize()
free_after, _ = torch.cuda.mem_get_info(0)
with open(args.ready + ".tmp", "w") as fh:
    json.dump({"pid": os.getpid(), "held_bytes": want, "total": total, "free_before": free, "free_after": free_after}, fh)
os.replace(args.ready + ".tmp", args.ready)
while True:
    time.sleep(60)
