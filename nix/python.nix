# One Python interpreter with its package set, plus the packages from ./pkgs.
# Called once with stable nixpkgs' python3 and once with nixpkgs-unstable's
# python312 (CUDA); each result is self-contained, so the sets never mix.
{ python }:
let
  python' = python.override {
    self = python';
    packageOverrides = import ./pkgs;
  };
in
python'
