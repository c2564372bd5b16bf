{
  description = "evolve: a self-tuning experiment loop for retrieval pipelines (packages and NixOS modules)";

  # No flake.lock is committed: run `nix flake lock` on a networked machine
  # (see docs/nixos.md).  The Nix files live in ./nix.
  inputs = {
    # the system, and evolve's CPU/HTTP build
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    # vLLM, torch and CUDA user space, for evolve-gpu and the vLLM services
    nixpkgs-unstable.url = "github:NixOS/nixpkgs/nixos-unstable";
  };

  outputs =
    {
      self,
      nixpkgs,
      nixpkgs-unstable,
    }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      # where the CUDA outputs (evolve-gpu, vllm) are offered: the GPU nodes
      gpuSystems = [ "x86_64-linux" ];
      forAllSystems = lib.genAttrs systems;
      isGpu = system: lib.elem system gpuSystems;

      # Two package sets that never meet in one Python process:
      #   stable:   nixpkgs' python3, for evolve and the devShell;
      #   unstable: nixpkgs-unstable's python312 with CUDA, for evolve-gpu and vLLM.
      perSystem = forAllSystems (system: rec {
        pkgs = nixpkgs.legacyPackages.${system};
        pkgsCuda = import nixpkgs-unstable {
          inherit system;
          config = {
            allowUnfree = true;
            cudaSupport = true;
          };
        };
        python = import ./nix/python.nix { python = pkgs.python3; };
        pythonCuda = import ./nix/python.nix { python = pkgsCuda.python312; };
      });
    in
    {
      packages = forAllSystems (
        system:
        let
          s = perSystem.${system};
        in
        {
          evolve = s.python.pkgs.callPackage ./nix/package.nix { gpu = false; };
          default = self.packages.${system}.evolve;
        }
        // lib.optionalAttrs (isGpu system) {
          evolve-gpu = s.pythonCuda.pkgs.callPackage ./nix/package.nix { gpu = true; };
          # what services.vllm-api runs by default
          vllm = s.pkgsCuda.python312Packages.vllm;
        }
      );

      nixosModules = {
        evolve =
          { lib, pkgs, ... }:
          {
            key = "evolve-flake#nixosModules.evolve";
            _file = "${toString ./flake.nix}#nixosModules.evolve";
            imports = [ ./nix/modules/evolve.nix ];
            services.evolve.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.evolve;
          };
        evolve-serve =
          { lib, pkgs, ... }:
          {
            key = "evolve-flake#nixosModules.evolve-serve";
            _file = "${toString ./flake.nix}#nixosModules.evolve-serve";
            imports = [ ./nix/modules/evolve-serve.nix ];
            services.evolve-serve.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.evolve;
          };
        vllm-api =
          { lib, pkgs, ... }:
          {
            key = "evolve-flake#nixosModules.vllm-api";
            _file = "${toString ./flake.nix}#nixosModules.vllm-api";
            imports = [ ./nix/modules/vllm-api.nix ];
            services.vllm-api.package = lib.mkDefault (
              self.packages.${pkgs.stdenv.hostPlatform.system}.vllm or null
            );
          };
        evolve-mlflow = {
          key = "evolve-flake#nixosModules.evolve-mlflow";
          _file = "${toString ./flake.nix}#nixosModules.evolve-mlflow";
          imports = [ ./nix/modules/evolve-mlflow.nix ];
        };
        default = {
          key = "evolve-flake#nixosModules.default";
          _file = "${toString ./flake.nix}#nixosModules.default";
          imports = [
            self.nixosModules.evolve
            self.nixosModules.evolve-serve
            self.nixosModules.vllm-api
            self.nixosModules.evolve-mlflow
          ];
        };
      };

      devShells = forAllSystems (
        system:
        let
          s = perSystem.${system};
          evolve = self.packages.${system}.evolve;
        in
        {
          # stable Python with evolve's dependencies; evolve itself from the checkout
          default = s.pkgs.mkShell {
            packages = [
              (s.python.withPackages (
                ps:
                evolve.passthru.pythonDependencies
                ++ [
                  ps.pytest
                  ps.hatchling
                  ps.build
                ]
              ))
            ];
            shellHook = ''
              export PYTHONPATH="$PWD''${PYTHONPATH:+:$PYTHONPATH}"
              export NUMBA_CACHE_DIR="''${XDG_CACHE_HOME:-$HOME/.cache}/evolve-numba"
            '';
          };
        }
      );

      checks = forAllSystems (
        system:
        let
          s = perSystem.${system};
          inherit (self.packages.${system}) evolve;
          evolve-gpu = self.packages.${system}.evolve-gpu;
          apart =
            evolve.passthru.python != evolve-gpu.passthru.python
            && evolve.passthru.python.pythonVersion == s.pkgs.python3.pythonVersion
            && evolve-gpu.passthru.python.pythonVersion == "3.12"
            && (evolve-gpu.passthru.python.pkgs.torch.cudaSupport or false)
            && !(lib.elem "vllm" (map (d: d.pname or "") evolve.passthru.pythonDependencies));
        in
        {
          inherit evolve;
        }
        // lib.optionalAttrs (isGpu system) {
          # evaluation-time guard: evolve on stable python3, evolve-gpu on
          # unstable python312 with CUDA, no vLLM in the stable closure
          python-sets-apart =
            if apart then
              s.pkgs.runCommand "evolve-python-sets-apart" { } "touch $out"
            else
              throw "evolve and evolve-gpu must be built from separate Python package sets (stable python3 / unstable python312 with CUDA)";
        }
        // lib.optionalAttrs (system == "x86_64-linux") {
          # needs KVM: nix build .#checks.x86_64-linux.vm-test
          vm-test = s.pkgs.testers.runNixOSTest (import ./nix/tests/vm-test.nix { inherit self; });
        }
      );
    };
}
