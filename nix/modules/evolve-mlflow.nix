# services.evolve-mlflow: an MLflow tracking server (nixpkgs has no MLflow module).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.evolve-mlflow;
  util = import ./util.nix { inherit lib; };

  stateDir = "/var/lib/evolve-mlflow";

  command = [
    (lib.getExe' cfg.package "mlflow")
    "server"
    "--backend-store-uri"
    cfg.backendStoreUri
    "--artifacts-destination"
    cfg.artifactsDestination
    "--host"
    cfg.host
    "--port"
    (toString cfg.port)
  ]
  ++ cfg.extraArgs;
in
{
  options.services.evolve-mlflow = {
    enable = lib.mkEnableOption "an MLflow tracking server for evolve";

    package = mkOption {
      type = types.package;
      default = pkgs.mlflow-server;
      defaultText = lib.literalExpression "pkgs.mlflow-server";
      description = "MLflow with its server dependencies (gunicorn, psycopg2, boto3); it must provide bin/mlflow.";
    };

    backendStoreUri = mkOption {
      type = types.str;
      default = "sqlite:///${stateDir}/mlflow.db";
      example = "postgresql://mlflow@localhost/mlflow";
      description = ''
        Where runs, parameters and metrics live (`--backend-store-uri`).  No
        password in the URL: put PGPASSWORD (or PGPASSFILE) into `environmentFile`.
      '';
    };

    artifactsDestination = mkOption {
      type = types.str;
      default = "${stateDir}/artifacts";
      example = "s3://mlflow-artifacts";
      description = "Where the server stores artifacts (`--artifacts-destination`); a local path must be writable by the service (its StateDirectory is).";
    };

    host = mkOption {
      type = types.str;
      default = "127.0.0.1";
      description = "Address to listen on (`--host`); 0.0.0.0 to serve the GPU nodes.";
    };

    port = mkOption {
      type = types.port;
      default = 5000;
      description = "Port to listen on (`--port`).";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open `port` in the firewall.";
    };

    environmentFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/mlflow.env";
      description = "EnvironmentFile= with PGPASSWORD, AWS_* and the like (a string path, kept out of the Nix store).";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "--allowed-hosts"
        "storage.lan:5000,localhost:5000"
      ];
      description = "Further arguments to `mlflow server`.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      (util.passwordAssertion "services.evolve-mlflow.backendStoreUri" "services.evolve-mlflow.environmentFile" cfg.backendStoreUri)
    ];

    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall cfg.port;

    systemd.services.evolve-mlflow = {
      description = "MLflow tracking server for evolve";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [
        "network-online.target"
        "postgresql.service"
      ];
      environment = {
        HOME = stateDir;
        XDG_CACHE_HOME = "${stateDir}/.cache";
      };
      serviceConfig = {
        Type = "simple";
        ExecStart = util.escapeExecArgs command;
        Restart = "on-failure";
        RestartSec = "5s";
        DynamicUser = true;
        StateDirectory = "evolve-mlflow";
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
