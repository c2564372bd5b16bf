#!/usr/bin/env bash
# Offline checks of evolve's Nix files (flake.nix, nix/), in well under a minute:
#   1. every .nix file parses                      (nix-instantiate --parse)
#   2. the NixOS modules and packages behave        (nix/tests/modules.nix on the
#      module-system and nixpkgs stand-ins in nix/tests/stub-nixpkgs), including
#      cases that must fail: misspelled options, ports out of range, passwords in URLs
#   3. `nix flake check --no-build` passes          (both nixpkgs inputs overridden
#      by the stand-in; run in a copy of the tree, so uncommitted files count)
# Needs only Nix >= 2.8 (Debian: apt-get install -y nix-bin); no network, no nixpkgs.
# Prints one PASS/FAIL line per check and ends with "N passed, N failed".
# Usage: bash nix/check.sh      (or: make nix-check)
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/evolve-nix-check.XXXXXX")
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'PASS %s\n' "$1"; }
fail() {
  failed=$((failed + 1))
  printf 'FAIL %s\n' "$1"
  if [ -n "${2:-}" ]; then printf '%s\n' "$2" | tail -n 15 | sed 's/^/     | /'; fi
}
finish() {
  printf '%d passed, %d failed\n' "$passed" "$failed"
  [ "$failed" -eq 0 ]
  exit $?
}

# ------------------------------------------------------------------ Nix itself
if ! command -v nix-instantiate >/dev/null 2>&1 || ! command -v nix >/dev/null 2>&1; then
  fail "nix: not installed (Debian/Ubuntu: apt-get update && apt-get install -y nix-bin)"
  finish
fi

# no user config, no registry download, caches inside $WORK
if [ -z "${HOME:-}" ] || [ ! -w "${HOME}" ]; then export HOME="$WORK"; fi
export XDG_CACHE_HOME="$WORK/cache"
printf '{"flakes":[],"version":2}\n' >"$WORK/registry.json"
export NIX_CONFIG="experimental-features = nix-command flakes
flake-registry = $WORK/registry.json
warn-dirty = false"
NIXFLAGS=(--extra-experimental-features 'nix-command flakes')

# Evaluation writes .drv files, so it needs a store it may write to: the default
# one (root, or a running nix-daemon), else a throwaway store under $WORK.
probe_store() {
  nix-instantiate --eval --strict -E \
    '(derivation { name = "evolve-nix-check-probe"; system = "x86_64-linux"; builder = "/bin/sh"; }).drvPath' \
    >/dev/null 2>"$WORK/probe.err"
}
if ! probe_store; then
  if [ -z "${NIX_REMOTE:-}" ] && [ -S /nix/var/nix/daemon-socket/socket ] && NIX_REMOTE=daemon probe_store; then
    export NIX_REMOTE=daemon
  else
    export NIX_REMOTE="local?root=$WORK/store"
    mkdir -p "$WORK/store"
    if ! probe_store; then
      fail "nix: no writable Nix store (tried the default store, the daemon and $NIX_REMOTE)" "$(cat "$WORK/probe.err")"
      finish
    fi
  fi
fi
printf 'using %s, store %s\n' "$(nix --version)" "${NIX_REMOTE:-default}"

# ------------------------------------------------------------------ 1. parse
cd "$ROOT" || exit 1
while IFS= read -r f; do
  if out=$(nix-instantiate --parse "$f" 2>&1 >/dev/null); then
    pass "parse: $f"
  else
    fail "parse: $f" "$out"
  fi
done < <(find . \( -name .git -o -name .venv -o -name node_modules -o -name 'result*' \) -prune -o -name '*.nix' -type f -print | sed 's|^\./||' | sort)

# ------------------------------------------------------------------ the tree, copied
# flakes in a git work tree see only tracked files; a copy sees everything
SRC="$WORK/src"
mkdir -p "$SRC"
cp -R flake.nix nix "$SRC/"
for f in pyproject.toml README.md LICENSE; do
  [ -e "$f" ] && cp "$f" "$SRC/"
done
if [ ! -e "$SRC/pyproject.toml" ]; then
  # only in the copy: the real one is the Python side's to write
  printf '[project]\nname = "evolve"\nversion = "0.0.0"\ndependencies = []\n' >"$SRC/pyproject.toml"
  printf 'note: no pyproject.toml yet; checking with a stand-in one\n'
fi
cd "$SRC" || exit 1

# ------------------------------------------------------------------ 2. module and package tests
if report=$(nix "${NIXFLAGS[@]}" eval --raw -f nix/tests/modules.nix report 2>&1); then
  while IFS= read -r line; do
    case "$line" in
      "PASS "*) pass "module: ${line#PASS }" ;;
      "FAIL "*) fail "module: ${line#FAIL }" ;;
      "") ;;
      *) printf '%s\n' "$line" ;;
    esac
  done <<<"$report"
else
  fail "module tests: nix/tests/modules.nix does not evaluate" "$report"
fi

if cases=$(nix "${NIXFLAGS[@]}" eval --raw -f nix/tests/modules.nix negativeCases 2>&1); then
  while IFS=$'\t' read -r name expect; do
    [ -n "$name" ] || continue
    if out=$(nix-instantiate --eval --strict nix/tests/modules.nix -A "negative.$name.run" 2>&1); then
      fail "module must fail: $name (it evaluated)"
    elif grep -qF -- "$expect" <<<"$out"; then
      pass "module must fail: $name"
    else
      fail "module must fail: $name (failed, but without \"$expect\")" "$out"
    fi
  done <<<"$cases"
else
  fail "module tests: negative cases do not evaluate" "$cases"
fi

# ------------------------------------------------------------------ 3. flake check
STUB="path:$SRC/nix/tests/stub-nixpkgs"
if out=$(nix "${NIXFLAGS[@]}" flake check --no-build --no-write-lock-file \
  --override-input nixpkgs "$STUB" \
  --override-input nixpkgs-unstable "$STUB" \
  "path:$SRC" 2>&1); then
  pass "flake check --no-build (nixpkgs and nixpkgs-unstable: stand-in)"
else
  fail "flake check --no-build (nixpkgs and nixpkgs-unstable: stand-in)" "$out"
fi

# the outputs the docs promise (flake check has instantiated them all above)
expect_outputs() { # attribute, names...
  local attr=$1 names m missing=""
  shift
  if ! names=$(nix "${NIXFLAGS[@]}" eval --raw --no-write-lock-file \
    --override-input nixpkgs "$STUB" --override-input nixpkgs-unstable "$STUB" \
    --apply 'o: builtins.concatStringsSep " " (builtins.attrNames o)' "path:$SRC#$attr" 2>"$WORK/eval.err"); then
    fail "flake outputs: $attr" "$(cat "$WORK/eval.err")"
    return
  fi
  for m in "$@"; do
    [[ " $names " == *" $m "* ]] || missing="$missing $m"
  done
  if [ -z "$missing" ]; then pass "flake outputs: $attr: $*"; else fail "flake outputs: $attr lacks$missing"; fi
}
expect_outputs packages.x86_64-linux evolve evolve-gpu vllm default
expect_outputs nixosModules default evolve evolve-serve vllm-api evolve-mlflow
expect_outputs devShells.x86_64-linux default
expect_outputs checks.x86_64-linux vm-test evolve python-sets-apart

# no lock file may be committed (docs/nixos.md: run `nix flake lock` on a networked machine)
if [ -e "$ROOT/flake.lock" ] && git -C "$ROOT" ls-files --error-unmatch flake.lock >/dev/null 2>&1; then
  fail "flake.lock is committed (it is generated where nixpkgs can be fetched)"
else
  pass "no flake.lock committed"
fi

finish
