{
  # Stand-in for github:NixOS/nixpkgs, used only by nix/check.sh as
  #   --override-input nixpkgs path:./nix/tests/stub-nixpkgs
  #   --override-input nixpkgs-unstable path:./nix/tests/stub-nixpkgs
  # so `nix flake check --no-build` can evaluate evolve's flake offline.
  description = "offline stand-in for nixpkgs (evaluation only; builds nothing)";

  outputs =
    { self }:
    let
      lib = import ./lib.nix;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs systems (system: import ./pkgs.nix { inherit system; });
      nixosModules = { };
    };
}
