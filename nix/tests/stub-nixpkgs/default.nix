# `import nixpkgs { system; config; overlays; }` for the stand-in.
import ./pkgs.nix
