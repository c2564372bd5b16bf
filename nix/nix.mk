# Offline checks of flake.nix and nix/ (parse, NixOS module tests, flake check on a
# stand-in nixpkgs). Needs Nix >= 2.8 (Debian: apt-get install -y nix-bin).
.PHONY: nix-check
nix-check:
	bash nix/check.sh
