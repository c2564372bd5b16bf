# services.evolve: the nightly tuning run, a oneshot service started by a timer.
#
# The flake's nixosModules.evolve imports this file and sets `package` to the
# flake's evolve build; used on its own, set services.evolve.package yourself.
{
  config,
  lib,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.evolve;
  util = import ./util.nix { inherit lib; };

  stateDir = "/var/lib/evolve";

  # local units the run talks to; `after` only orders units started together
  localUnits =
    lib.optional (config.services.evolve-mlflow.enable or false) "evolve-mlflow.service"
    ++ map (n: "vllm-api-${n}.service") (lib.attrNames (config.services.vllm-api.instances or { }));

  command = [
    (lib.getExe' cfg.package "evolve")
    "run"
    "--workspace"
    stateDir
    "--study"
    cfg.studyName
    "--dataset"
    cfg.dataset
    "--trials"
    (toString cfg.nTrials)
    "--timeout"
    (toString cfg.timeout)
  ]
  ++ lib.optionals (cfg.optunaStorage != null) [
    "--storage"
    cfg.optunaStorage
  ]
  ++ lib.optionals (cfg.mlflowTrackingUri != null) [
    "--tracking-uri"
    cfg.mlflowTrackingUri
  ]
  ++ lib.optionals (cfg.embeddingEndpoint != null) [
    "--set"
    "embedding.base_url=${cfg.embeddingEndpoint}"
  ]
  ++ cfg.extraArgs;

  # `--set` and `--search-space` of extraArgs (both spellings: "--set" "k=v" and "--set=k=v"): the doctor checks
  # the night those describe
  pickArgs =
    flags: args:
    if args == [ ] then
      [ ]
    else
      let
        a = lib.head args;
        rest = lib.tail args;
      in
      if lib.elem a flags && rest != [ ] then
        [ a (lib.head rest) ] ++ pickArgs flags (lib.tail rest)
      else if lib.any (f: lib.hasPrefix "${f}=" a) flags then
        [ a ] ++ pickArgs flags rest
      else
        pickArgs flags rest;

  # `evolve doctor` before the night: a failed check stops the unit (OnFailure= fires); its lines go to the
  # journal and its records to /var/lib/evolve/doctor.json
  doctorCommand = [
    (lib.getExe' cfg.package "evolve")
    "doctor"
    "--workspace"
    stateDir
  ]
  ++ lib.optionals (cfg.optunaStorage != null) [
    "--storage"
    cfg.optunaStorage
  ]
  ++ lib.optionals (cfg.mlflowTrackingUri != null) [
    "--tracking-uri"
    cfg.mlflowTrackingUri
  ]
  ++ lib.optionals (cfg.embeddingEndpoint != null) [
    "--set"
    "embedding.base_url=${cfg.embeddingEndpoint}"
  ]
  ++ pickArgs [ "--set" "--search-space" "--cache-url" ] cfg.extraArgs
  ++ cfg.doctor.extraArgs;
in
{
  imports = [ ./evolve-user.nix ];

  options.services.evolve = {
    enable = lib.mkEnableOption "the nightly evolve run (a systemd timer starting a oneshot service)";

    package = mkOption {
      type = types.nullOr types.package;
      default = null;
      defaultText = lib.literalExpression "evolve.packages.\${system}.evolve (set by the flake's nixosModules)";
      description = ''
        The evolve package: the flake's `evolve` (stable nixpkgs, embeds over
        HTTP through a vLLM service) or `evolve-gpu` (nixpkgs-unstable with
        CUDA, runs vLLM in-process).
      '';
    };

    schedule = mkOption {
      type = types.str;
      default = "*-*-* 01:00:00";
      example = "Mon..Fri *-*-* 22:30:00";
      description = "When to run, as a systemd calendar expression (OnCalendar=, see systemd.time(7)).";
    };

    randomizedDelaySec = mkOption {
      type = types.str;
      default = "10min";
      example = "0";
      description = "RandomizedDelaySec= of the timer: spreads the start of nodes that share one schedule.";
    };

    studyName = mkOption {
      type = types.nonEmptyStr;
      default = "nightly";
      description = "Optuna study name (`--study`); nodes that share a storage and a study name share trials.";
    };

    nTrials = mkOption {
      type = types.ints.positive;
      default = 20;
      description = "Trials per run (`--trials`).";
    };

    timeout = mkOption {
      type = types.ints.positive;
      default = 21600;
      description = ''
        Seconds after which the study stops proposing trials (`--timeout`).
        The unit itself is stopped one hour later (TimeoutStartSec=).
      '';
    };

    dataset = mkOption {
      type = types.str;
      default = "scifact";
      example = "/srv/datasets/internal-qa";
      description = "A bundled dataset name or a path readable by the service (`--dataset`).";
    };

    optunaStorage = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "postgresql+psycopg://evolve@storage.lan:5432/optuna";
      description = ''
        Optuna storage URL (`--storage`); default: evolve's own storage inside
        /var/lib/evolve.  No password in the URL: put PGPASSWORD (or PGPASSFILE)
        into `environmentFile`.
      '';
    };

    mlflowTrackingUri = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "http://storage.lan:5000";
      description = "MLflow tracking URI (`--tracking-uri`); default: evolve's own, inside /var/lib/evolve.";
    };

    embeddingEndpoint = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "http://127.0.0.1:8000/v1";
      description = ''
        OpenAI-compatible embedding endpoint, e.g. a services.vllm-api
        instance; passed as `--set embedding.base_url=...`.
      '';
    };

    environmentFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/evolve.env";
      description = ''
        File of KEY=value lines for the service (EnvironmentFile=): PGPASSWORD,
        PGPASSFILE, MLFLOW_TRACKING_USERNAME/PASSWORD, API keys.  Give it as a
        string, not a Nix path, so the secret never enters the Nix store.
      '';
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "--set"
        "embedding.backend=openai"
      ];
      description = "Further arguments appended to `evolve run`.";
    };

    onFailure = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "notify-failure@%n.service" ];
      description = ''
        Units started when a run fails (OnFailure=), e.g. a mail or chat notifier. systemd hands such a unit only
        the failed unit's name (%n); when the doctor stopped the night, /var/lib/evolve/doctor.json holds its
        records (docs/nixos.md).
      '';
    };

    doctor = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Run `evolve doctor` (without --deep) before the night (ExecStartPre=): a failed check (driver too old
          for the CUDA runtime, GPU memory taken, an endpoint or store down) stops the night before it starts.
        '';
      };
      extraArgs = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [
          "--llm-url"
          "http://127.0.0.1:11434/v1"
          "--llm-model"
          "qwen2.5:7b"
        ];
        description = "Further arguments to `evolve doctor` (the --set and --search-space of extraArgs are passed already).";
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.package != null;
        message = "services.evolve.package is not set: import evolve's nixosModules from its flake (which sets it), or set it to evolve.packages.<system>.evolve.";
      }
      (util.passwordAssertion "services.evolve.optunaStorage" "services.evolve.environmentFile" cfg.optunaStorage)
      (util.passwordAssertion "services.evolve.mlflowTrackingUri" "services.evolve.environmentFile" cfg.mlflowTrackingUri)
    ];

    systemd.services.evolve = {
      description = "evolve: nightly tuning of the retrieval pipeline";
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ] ++ localUnits;
      inherit (cfg) onFailure;
      # a rebuild must not kill a run in progress; the next run uses the new unit
      restartIfChanged = false;
      environment = {
        EVOLVE_HOME = stateDir;
        HOME = stateDir;
        NUMBA_CACHE_DIR = "${stateDir}/.cache/numba";
        XDG_CACHE_HOME = "${stateDir}/.cache";
        HF_HOME = "${stateDir}/.cache/huggingface";
        MPLCONFIGDIR = "${stateDir}/.cache/matplotlib";
        MPLBACKEND = "Agg";
        PYTHONUNBUFFERED = "1";
      };
      serviceConfig = {
        Type = "oneshot";
        ExecStart = util.escapeExecArgs command;
        ExecStartPre = lib.optional cfg.doctor.enable (util.escapeExecArgs doctorCommand);
        # a static user, shared with services.evolve-serve: both own /var/lib/evolve (nix/modules/evolve-user.nix)
        User = "evolve";
        Group = "evolve";
        StateDirectory = "evolve";
        StateDirectoryMode = "0750";
        WorkingDirectory = stateDir;
        TimeoutStartSec = "${toString (cfg.timeout + 3600)}s";
        Nice = 10;
        NoNewPrivileges = true;
        PrivateTmp = true;
        ProtectHome = true;
        ProtectSystem = "strict";
        RestrictSUIDSGID = true;
      }
      // lib.optionalAttrs (cfg.environmentFile != null) { EnvironmentFile = cfg.environmentFile; };
    };

    systemd.timers.evolve = {
      description = "Nightly evolve run";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = cfg.schedule;
        Persistent = true;
        RandomizedDelaySec = cfg.randomizedDelaySec;
        Unit = "evolve.service";
      };
    };
  };
}
