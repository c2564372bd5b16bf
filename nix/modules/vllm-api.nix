# services.vllm-api.instances.<name>: OpenAI-compatible vLLM servers, one
# systemd service `vllm-api-<name>` each, so an embedder and a reranker can be
# served side by side on the same GPUs.
#
# vLLM comes from nixpkgs-unstable's python312Packages built with CUDA: the
# flake's nixosModules.vllm-api sets services.vllm-api.package to it.  Used on
# its own, this module has no default package (so it evaluates on any nixpkgs);
# set services.vllm-api.package yourself.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.vllm-api;
  util = import ./util.nix { inherit lib; };

  instanceModule =
    { name, ... }:
    {
      options = {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "Whether to run this instance.";
        };
        model = mkOption {
          type = types.nonEmptyStr;
          example = "BAAI/bge-m3";
          description = "Hugging Face model id or a local model directory (`vllm serve MODEL`).";
        };
        host = mkOption {
          type = types.str;
          default = "127.0.0.1";
          description = "Address to listen on (`--host`).";
        };
        port = mkOption {
          type = types.port;
          example = 8000;
          description = "Port to listen on (`--port`); each instance needs its own.";
        };
        gpus = mkOption {
          type = types.listOf types.ints.unsigned;
          default = [ 0 ];
          example = [
            0
            1
          ];
          description = ''
            GPU indices (PCI bus order, as nvidia-smi numbers them) this
            instance may use: CUDA_VISIBLE_DEVICES.  Use
            `--tensor-parallel-size` in extraArgs to spread one model over them.
          '';
        };
        gpuMemoryUtilization = mkOption {
          type = types.float;
          default = 0.9;
          example = 0.55;
          description = ''
            Fraction of each GPU's memory this instance may take
            (`--gpu-memory-utilization`).  Instances sharing a GPU must add up
            to at most 1.0 (asserted).
          '';
        };
        maxModelLen = mkOption {
          type = types.nullOr types.ints.positive;
          default = null;
          example = 8192;
          description = "Context length cap (`--max-model-len`); lower it to fit the KV cache into a shared GPU.";
        };
        extraArgs = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [
            "--runner"
            "pooling"
          ];
          description = "Further arguments to `vllm serve`.";
        };
        environmentFile = mkOption {
          type = types.nullOr types.path;
          default = null;
          example = "/run/secrets/vllm.env";
          description = "EnvironmentFile= for secrets such as HF_TOKEN (a string path, kept out of the Nix store).";
        };
        openFirewall = mkOption {
          type = types.bool;
          default = false;
          description = "Open `port` in the firewall (needed when other nodes call this instance).";
        };
        package = mkOption {
          type = types.nullOr types.package;
          default = cfg.package;
          defaultText = lib.literalExpression "config.services.vllm-api.package";
          description = "The vLLM package of this instance.";
        };
      };
    };

  instances = lib.filterAttrs (_: i: i.enable) cfg.instances;
  names = lib.attrNames instances;

  sharesGpu = a: b: lib.any (g: lib.elem g b.gpus) a.gpus;

  # vLLM sizes its KV cache from the memory free at start-up: instances that
  # share a GPU start one after the other (ExecStartPost waits for /health)
  startAfter =
    name:
    map (n: "vllm-api-${n}.service") (
      lib.filter (n: n < name && sharesGpu instances.${n} instances.${name}) names
    );

  probeHost =
    host:
    if host == "0.0.0.0" || host == "" then
      "127.0.0.1"
    else if host == "::" then
      "[::1]"
    else if lib.hasInfix ":" host then
      "[${host}]"
    else
      host;

  # Ollama beside the instances (services.ollama, nixpkgs' own module): its declared reserve counts on its GPUs
  ollamaOn = (config.services.ollama.enable or false) && (config.services.ollama.acceleration or null) != false;
  ollama = cfg.ollama;
  ollamaShare = g: if ollamaOn && lib.elem g ollama.gpus then ollama.memoryFraction else 0.0;
  sharedWithOllama = lib.filter (g: lib.elem g ollama.gpus) gpuIds;

  gpuIds = lib.unique (lib.concatMap (i: i.gpus) (lib.attrValues instances));
  shareOf = g: lib.foldl' (s: i: if lib.elem g i.gpus then s + i.gpuMemoryUtilization else s) (ollamaShare g) (
    lib.attrValues instances
  );
  usersOf =
    g:
    lib.concatStringsSep ", " (
      lib.filter (n: lib.elem g instances.${n}.gpus) names
      ++ lib.optional (ollamaShare g > 0.0) "Ollama's reserve (services.vllm-api.ollama.memoryFraction)"
    );
  ports = map (i: i.port) (lib.attrValues instances);

  mkService =
    name: inst:
    let
      stateDir = "/var/lib/vllm-api-${name}";
      cacheDir = "/var/cache/vllm-api-${name}";
      command = [
        (lib.getExe' inst.package "vllm")
        "serve"
        inst.model
        "--host"
        inst.host
        "--port"
        (toString inst.port)
        "--gpu-memory-utilization"
        (util.formatFloat inst.gpuMemoryUtilization)
      ]
      ++ lib.optionals (inst.maxModelLen != null) [
        "--max-model-len"
        (toString inst.maxModelLen)
      ]
      ++ inst.extraArgs;
      probe = [
        (lib.getExe pkgs.curl)
        "--silent"
        "--show-error"
        "--fail"
        "--output"
        "/dev/null"
        "--max-time"
        "10"
        "--retry"
        "360"
        "--retry-delay"
        "5"
        "--retry-max-time"
        "1800"
        "--retry-all-errors"
        "http://${probeHost inst.host}:${toString inst.port}/health"
      ];
    in
    {
      description = "vLLM OpenAI-compatible API: ${name} (${inst.model})";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [
        "network-online.target"
        "systemd-modules-load.service"
      ]
      ++ startAfter name;
      environment = {
        CUDA_VISIBLE_DEVICES = lib.concatMapStringsSep "," toString inst.gpus;
        CUDA_DEVICE_ORDER = "PCI_BUS_ID";
        HOME = stateDir;
        HF_HOME = "${stateDir}/huggingface";
        XDG_CACHE_HOME = cacheDir;
        VLLM_CACHE_ROOT = "${cacheDir}/vllm";
        TRITON_CACHE_DIR = "${cacheDir}/triton";
        VLLM_NO_USAGE_STATS = "1";
        DO_NOT_TRACK = "1";
      };
      serviceConfig = {
        Type = "simple";
        ExecStart = util.escapeExecArgs command;
        # "started" means "answers /health", so ordered instances start one by one
        ExecStartPost = util.escapeExecArgs probe;
        TimeoutStartSec = "35min";
        Restart = "always";
        RestartSec = "10s";
        DynamicUser = true;
        StateDirectory = "vllm-api-${name}";
        CacheDirectory = "vllm-api-${name}";
        WorkingDirectory = stateDir;
        # GPU access, and no other device: /dev/nvidia[0-9]*, nvidiactl, nvidia-modeset
        # (char-nvidia-frontend) and /dev/nvidia-uvm* (char-nvidia-uvm).
        # CUDA_VISIBLE_DEVICES picks the GPUs: denying the other /dev/nvidiaN
        # would renumber the visible ones.
        DevicePolicy = "closed";
        DeviceAllow = [
          "char-nvidia-frontend rw"
          "char-nvidia-uvm rw"
        ];
        NoNewPrivileges = true;
        PrivateTmp = true;
        ProtectHome = true;
        ProtectSystem = "strict";
        RestrictSUIDSGID = true;
      }
      // lib.optionalAttrs (inst.environmentFile != null) { EnvironmentFile = inst.environmentFile; };
    };
in
{
  options.services.vllm-api = {
    package = mkOption {
      type = types.nullOr types.package;
      default = null;
      defaultText = lib.literalExpression "evolve.packages.\${system}.vllm (nixpkgs-unstable python312Packages.vllm with cudaSupport; set by the flake's nixosModules)";
      description = "Default vLLM package of all instances (it must provide bin/vllm).";
    };

    instances = mkOption {
      type = types.attrsOf (types.submodule instanceModule);
      default = { };
      description = "vLLM servers by name; each runs as the systemd service vllm-api-<name>.";
    };

    # Ollama (services.ollama) on the same GPUs: what it may hold, declared, so the fractions add up
    ollama = {
      gpus = mkOption {
        type = types.listOf types.ints.unsigned;
        default = [ 0 ];
        description = ''
          GPUs Ollama runs on (CUDA_VISIBLE_DEVICES of ollama.service, PCI bus order as nvidia-smi numbers them).
        '';
      };
      memoryFraction = mkOption {
        type = types.float;
        default = 0.0;
        example = 0.35;
        description = ''
          Fraction of each of those GPUs kept for Ollama: its loaded models (up to maxLoadedModels of them, each
          about its file size) plus their KV cache (numParallel requests of the model's context). Counted with the
          vLLM instances' gpuMemoryUtilization on the same GPU: together at most 1.0 (asserted). Ollama loads a
          model when asked and offloads layers to the CPU when less is free, so too small a reserve makes it slow,
          not the vLLM instances fail; too large a sum makes a vLLM instance refuse to start.
        '';
      };
      maxLoadedModels = mkOption {
        type = types.ints.positive;
        default = 1;
        description = "OLLAMA_MAX_LOADED_MODELS: models Ollama keeps in GPU memory at once.";
      };
      keepAlive = mkOption {
        type = types.str;
        default = "5m";
        example = "30s";
        description = "OLLAMA_KEEP_ALIVE: how long an idle model stays loaded (\"0\": unload at once).";
      };
      numParallel = mkOption {
        type = types.ints.positive;
        default = 1;
        description = "OLLAMA_NUM_PARALLEL: requests one model serves at once (each with its own KV cache).";
      };
    };
  };

  config = lib.mkMerge [
  (lib.mkIf ollamaOn {
    # the settings that bound Ollama's GPU memory, and the GPUs it may use (defaults: set them in
    # services.ollama.environmentVariables to override)
    services.ollama.environmentVariables = lib.mapAttrs (_: lib.mkDefault) {
      CUDA_VISIBLE_DEVICES = lib.concatMapStringsSep "," toString ollama.gpus;
      CUDA_DEVICE_ORDER = "PCI_BUS_ID";
      OLLAMA_MAX_LOADED_MODELS = toString ollama.maxLoadedModels;
      OLLAMA_KEEP_ALIVE = ollama.keepAlive;
      OLLAMA_NUM_PARALLEL = toString ollama.numParallel;
    };
  })
  (lib.mkIf (instances != { }) {
    assertions =
      lib.mapAttrsToList (n: i: {
        assertion = i.package != null;
        message = "services.vllm-api.instances.${n}.package is not set: import evolve's nixosModules from its flake (which sets services.vllm-api.package), or set it.";
      }) instances
      ++ lib.mapAttrsToList (n: i: {
        assertion = i.gpuMemoryUtilization > 0.0 && i.gpuMemoryUtilization <= 1.0;
        message = "services.vllm-api.instances.${n}.gpuMemoryUtilization must be in (0, 1], got ${util.formatFloat i.gpuMemoryUtilization}.";
      }) instances
      ++ lib.mapAttrsToList (n: i: {
        assertion = i.gpus != [ ];
        message = "services.vllm-api.instances.${n}.gpus is empty: list at least one GPU index.";
      }) instances
      ++ map (g: {
        assertion = shareOf g <= 1.0 + 1.0e-9;
        message = "GPU ${toString g} is oversubscribed: the gpuMemoryUtilization of ${usersOf g} adds up to ${util.formatFloat (shareOf g)} > 1.0.";
      }) gpuIds
      ++ [
        {
          assertion = lib.length (lib.unique ports) == lib.length ports;
          message = "services.vllm-api.instances: two instances use the same port (${lib.concatMapStringsSep ", " toString ports}).";
        }
        {
          assertion = !(ollamaOn && ollama.memoryFraction <= 0.0 && sharedWithOllama != [ ]);
          message = "services.ollama runs on GPU ${lib.concatMapStringsSep ", " toString sharedWithOllama} beside vLLM instances, but services.vllm-api.ollama.memoryFraction declares no reserve for it: set it to what Ollama may hold (OLLAMA_MAX_LOADED_MODELS models plus their KV cache), so the fractions can be checked to add up to at most 1.0.";
        }
        {
          assertion = ollama.memoryFraction >= 0.0 && ollama.memoryFraction < 1.0;
          message = "services.vllm-api.ollama.memoryFraction must be in [0, 1), got ${util.formatFloat ollama.memoryFraction}.";
        }
      ];

    networking.firewall.allowedTCPPorts = lib.concatMap (i: lib.optional i.openFirewall i.port) (
      lib.attrValues instances
    );

    systemd.services = lib.mapAttrs' (n: i: lib.nameValuePair "vllm-api-${n}" (mkService n i)) instances;
  })
  ];
}
