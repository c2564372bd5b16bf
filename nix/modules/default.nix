# All of evolve's NixOS modules, without package defaults (the flake's
# nixosModules add those): services.evolve, services.evolve-serve, services.vllm-api, services.evolve-mlflow.
{
  imports = [
    ./evolve.nix
    ./evolve-serve.nix
    ./vllm-api.nix
    ./evolve-mlflow.nix
  ];
}
