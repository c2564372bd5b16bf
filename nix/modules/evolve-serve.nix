# services.evolve-serve: `evolve serve`, the champion answering people over HTTP, with the page at /.
#
# It sits behind services.evolve's promotion: both run as the static user `evolve` on the one workspace
# /var/lib/evolve, so when a promotion (`evolve promote-config`, `evolve rollback`) rewrites champion.yaml
# there, the running server builds the new champion beside the old one and swaps it in (no restart, no
# failed request). Feedback goes to /var/lib/evolve/feedback.sqlite, or to `feedbackUrl`, where the next
# night's `evolve run --gold feedback` finds it. `systemctl reload evolve-serve` (SIGHUP) re-checks the corpus.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.evolve-serve;
  util = import ./util.nix { inherit lib; };

  stateDir = "/var/lib/evolve";
  localUnits =
    lib.optional (config.services.evolve-mlflow.enable or false) "evolve-mlflow.service"
    ++ map (n: "vllm-api-${n}.service") (lib.attrNames (config.services.vllm-api.instances or { }));

  command = [
    (lib.getExe' cfg.package "evolve")
    "serve"
    "--workspace"
    stateDir
    "--host"
    cfg.host
    "--port"
    (toString cfg.port)
    "--check-interval"
    (toString cfg.checkInterval)
  ]
  ++ lib.optionals (cfg.studyName != null) [
    "--study"
    cfg.studyName
  ]
  ++ lib.optionals (cfg.dataset != null) [
    "--dataset"
    cfg.dataset
  ]
  ++ lib.optionals (cfg.optunaStorage != null) [
    "--storage"
    cfg.optunaStorage
  ]
  ++ lib.optionals (cfg.feedbackUrl != null) [
    "--feedback-url"
    cfg.feedbackUrl
  ]
  ++ lib.optionals (cfg.apiKeyEnv != null) [
    "--api-key-env"
    cfg.apiKeyEnv
  ]
  ++ lib.optional (!cfg.keepQueryText) "--no-query-text"
  ++ lib.optionals (cfg.challenger != null) [
    "--challenger"
    cfg.challenger
  ]
  ++ lib.optionals (cfg.embeddingEndpoint != null) [
    "--set"
    "embedding.base_url=${cfg.embeddingEndpoint}"
  ]
  ++ cfg.extraArgs;
in
{
  imports = [ ./evolve-user.nix ];

  options.services.evolve-serve = {
    enable = lib.mkEnableOption "`evolve serve`: the champion pipeline over HTTP, with a search page and UBI feedback";

    package = mkOption {
      type = types.nullOr types.package;
      default = null;
      defaultText = lib.literalExpression "evolve.packages.\${system}.evolve (set by the flake's nixosModules)";
      description = "The evolve package (the same one services.evolve runs).";
    };

    host = mkOption {
      type = types.str;
      default = "127.0.0.1";
      example = "0.0.0.0";
      description = "Address to bind (`--host`). Anything but loopback should come with `apiKeyEnv`.";
    };

    port = mkOption {
      type = types.port;
      default = 8080;
      description = "TCP port (`--port`).";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open `port` in the firewall.";
    };

    studyName = mkOption {
      type = types.nullOr types.nonEmptyStr;
      default = null;
      example = "nightly";
      description = ''
        Serve this study's dataset (`--study`). Default: the study the latest
        promotion came from (evolve reads it from /var/lib/evolve/history).
      '';
    };

    dataset = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/srv/datasets/helpdesk";
      description = "Serve this dataset instead (`--dataset`): a bundled name or a path readable by `evolve`.";
    };

    optunaStorage = mkOption {
      type = types.nullOr types.str;
      default = config.services.evolve.optunaStorage or null;
      defaultText = lib.literalExpression "config.services.evolve.optunaStorage";
      description = "Optuna storage URL (`--storage`), where the promoted study lives; no password in it.";
    };

    feedbackUrl = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "postgresql://evolve@storage.lan:5432/evolve";
      description = ''
        Where feedback is stored (`--feedback-url`); default /var/lib/evolve/feedback.sqlite.
        No password in the URL: put PGPASSWORD into `environmentFile`.
      '';
    };

    apiKeyEnv = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "EVOLVE_API_KEY";
      description = ''
        Name of an environment variable, set in `environmentFile`, whose value
        the API requires as a bearer key (`--api-key-env`). The page asks for it
        once; /healthz stays open.
      '';
    };

    keepQueryText = mkOption {
      type = types.bool;
      default = true;
      description = "Store what people typed (the next night embeds it as gold queries); false adds `--no-query-text`.";
    };

    challenger = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "17";
      description = "Interleave the champion with this trial number (or config YAML) (`--challenger`).";
    };

    checkInterval = mkOption {
      type = types.ints.positive;
      default = 300;
      description = "Seconds between corpus fingerprint checks (`--check-interval`); also on `systemctl reload`.";
    };

    embeddingEndpoint = mkOption {
      type = types.nullOr types.str;
      default = config.services.evolve.embeddingEndpoint or null;
      defaultText = lib.literalExpression "config.services.evolve.embeddingEndpoint";
      description = "OpenAI-compatible embedding endpoint for query vectors (`--set embedding.base_url=...`).";
    };

    environmentFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/evolve-serve.env";
      description = "EnvironmentFile= with the API key variable and PGPASSWORD (a string path, kept out of the Nix store).";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Further arguments appended to `evolve serve`.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.package != null;
        message = "services.evolve-serve.package is not set: import evolve's nixosModules from its flake (which sets it), or set it to evolve.packages.<system>.evolve.";
      }
      {
        assertion = cfg.apiKeyEnv == null || cfg.environmentFile != null;
        message = "services.evolve-serve.apiKeyEnv names a variable but no environmentFile sets it: put ${toString cfg.apiKeyEnv}=... into services.evolve-serve.environmentFile.";
      }
      (util.passwordAssertion "services.evolve-serve.feedbackUrl" "services.evolve-serve.environmentFile" cfg.feedbackUrl)
      (util.passwordAssertion "services.evolve-serve.optunaStorage" "services.evolve-serve.environmentFile" cfg.optunaStorage)
    ];
    warnings = lib.optional (cfg.host != "127.0.0.1" && cfg.host != "::1" && cfg.apiKeyEnv == null)
      "services.evolve-serve.host is ${cfg.host} without apiKeyEnv: anyone who reaches the port can search and store feedback.";

    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall cfg.port;

    systemd.services.evolve-serve = {
      description = "evolve serve: the champion retrieval pipeline over HTTP";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ] ++ localUnits;
      environment = {
        EVOLVE_HOME = stateDir;
        HOME = stateDir;
        NUMBA_CACHE_DIR = "${stateDir}/.cache/numba";
        XDG_CACHE_HOME = "${stateDir}/.cache";
        HF_HOME = "${stateDir}/.cache/huggingface";
        PYTHONUNBUFFERED = "1";
      };
      serviceConfig = {
        Type = "simple";
        ExecStart = util.escapeExecArgs command;
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        Restart = "on-failure";
        RestartSec = "5s";
        User = "evolve";
        Group = "evolve";
        StateDirectory = "evolve";
        StateDirectoryMode = "0750";
        WorkingDirectory = stateDir;
        NoNewPrivileges = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectHome = true;
        ProtectSystem = "strict";
        RestrictSUIDSGID = true;
      }
      // lib.optionalAttrs (cfg.environmentFile != null) { EnvironmentFile = cfg.environmentFile; };
    };
  };
}
