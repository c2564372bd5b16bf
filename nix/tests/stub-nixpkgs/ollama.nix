# Stand-in for nixpkgs' services.ollama (nixos/modules/services/misc/ollama.nix, read at nixpkgs commit
# 071a30aead7675355a957e8a9f9295aa24c6d91c): the same option names, types and defaults, so evolve's modules and
# their tests can set and read them offline. Of its config only what a test looks at is mirrored: the
# `ollama.service` environment (environmentVariables, then HOME, OLLAMA_MODELS and OLLAMA_HOST on top), its
# ExecStart and device access, the firewall port. Not nixpkgs: the model loader unit, the static user, the
# sandboxing options and `acceleration`'s package override are left out.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.services.ollama;
in
{
  options.services.ollama = {
    enable = lib.mkEnableOption "ollama server for local large language models";
    package = mkOption {
      type = types.package;
      default = pkgs.ollama;
      description = "The ollama package.";
    };
    user = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "Static user (null: DynamicUser).";
    };
    group = mkOption {
      type = types.nullOr types.str;
      default = cfg.user;
      description = "Static group, used with `user`.";
    };
    home = mkOption {
      type = types.str;
      default = "/var/lib/ollama";
      description = "Working and home directory.";
    };
    models = mkOption {
      type = types.str;
      default = "${cfg.home}/models";
      description = "Where models are read from and pulled to (OLLAMA_MODELS).";
    };
    host = mkOption {
      type = types.str;
      default = "127.0.0.1";
      description = "Listen address.";
    };
    port = mkOption {
      type = types.port;
      default = 11434;
      description = "Listen port.";
    };
    acceleration = mkOption {
      type = types.nullOr (types.enum [ false "rocm" "cuda" "vulkan" ]);
      default = null;
      description = "null: from nixpkgs.config (cudaSupport/rocmSupport); false: CPU only; rocm, cuda or vulkan.";
    };
    rocmOverrideGfx = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "HSA_OVERRIDE_GFX_VERSION for ROCm.";
    };
    environmentVariables = mkOption {
      type = types.attrsOf types.str;
      default = { };
      description = "Environment of ollama.service (OLLAMA_* settings, CUDA_VISIBLE_DEVICES, ...).";
    };
    loadModels = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Models pulled once the service runs.";
    };
    syncModels = mkOption {
      type = types.bool;
      default = false;
      description = "Remove installed models not listed in loadModels.";
    };
    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open `port` in the firewall.";
    };
  };

  config = lib.mkIf cfg.enable {
    systemd.services.ollama = {
      description = "Server for local large language models";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      environment = cfg.environmentVariables // {
        HOME = cfg.home;
        OLLAMA_MODELS = cfg.models;
        OLLAMA_HOST = "${cfg.host}:${toString cfg.port}";
      };
      serviceConfig = {
        Type = "exec";
        DynamicUser = true;
        ExecStart = "${lib.getExe cfg.package} serve";
        WorkingDirectory = cfg.home;
        StateDirectory = [ "ollama" ];
        DevicePolicy = "closed";
        DeviceAllow = [
          "char-nvidiactl"
          "char-nvidia-caps"
          "char-nvidia-frontend"
          "char-nvidia-uvm"
        ];
      };
    };
    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall cfg.port;
  };
}
