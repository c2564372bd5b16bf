# services.evolve-serve: `evolve serve`, the champion answering people over HTTP, with the page at /.
#
# It sits behind services.evolve's promotion: both run as the static user `evolve` on the one workspace
# /var/lib/evolve, so when a promotion (`evolve promote-config`, `evolve rollback`) rewrites champion.yaml
# there, the running server builds the new champion beside the old one and swaps it in (no restart, no
# failed request). Feedback goes to /var/lib/evolve/feedback.sqlite, or to `feedbackUrl`, where the next
# night's `evolve run --gold feedback` finds it. `systemctl reload evolve-serve` (SIGHUP) re-checks the corpus.
#
# `answer.*` points `POST /v1/answer`, the page's streamed answer and the OpenAI-compatible facade at the team's
# LLM: by default the services.vllm-api instance named `llm` when there is one; any OpenAI-compatible server
# otherwise (Ollama: http://127.0.0.1:11434/v1). Its API key never enters the Nix store: a variable set in
# `environmentFile`, or a file read at start through systemd's LoadCredential=.
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
  ans = cfg.answer;
  vllmInstances = lib.filterAttrs (_: i: i.enable) (config.services.vllm-api.instances or { });

  # the instance's address as seen from this host (a wildcard bind is reached on loopback)
  localHost =
    host:
    if host == "0.0.0.0" || host == "" || host == "::" then
      "127.0.0.1"
    else if lib.hasInfix ":" host then
      "[${host}]"
    else
      host;
  instance = if ans.instance != null then vllmInstances.${ans.instance} or null else null;
  # what vLLM answers to: --served-model-name when extraArgs give one, else the model
  servedName =
    inst:
    let
      args = inst.extraArgs;
      at = lib.filter (i: lib.elemAt args i == "--served-model-name") (lib.genList (i: i) (lib.length args));
    in
    if at != [ ] && lib.head at + 1 < lib.length args then lib.elemAt args (lib.head at + 1) else inst.model;

  # LoadCredential= name of apiKeyFile; the start script exports it as apiKeyEnv
  credential = "llm-api-key";
  keyEnv = if ans.apiKeyEnv != null then ans.apiKeyEnv else "EVOLVE_LLM_API_KEY";
  settingValue = v: if lib.isBool v then (if v then "true" else "false") else if lib.isFloat v then util.formatFloat v else toString v;
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
  ++ lib.optionals (ans.baseUrl != null) [
    "--set"
    "answer.base_url=${ans.baseUrl}"
  ]
  ++ lib.optionals (ans.model != null) [
    "--set"
    "answer.model=${ans.model}"
  ]
  ++ lib.optionals (ans.apiKeyEnv != null || ans.apiKeyFile != null) [
    "--set"
    "answer.api_key_env=${keyEnv}"
  ]
  ++ lib.concatLists (
    lib.mapAttrsToList (k: v: [
      "--set"
      "answer.${k}=${settingValue v}"
    ]) ans.settings
  )
  ++ lib.optionals (ans.maxAnswers != null) [
    "--max-answers"
    (toString ans.maxAnswers)
  ]
  ++ cfg.extraArgs;

  # with apiKeyFile: a start script reads the credential into the variable evolve reads (no secret in the store)
  startScript = pkgs.writeShellScript "evolve-serve-start" ''
    set -eu
    ${keyEnv}="$(< "$CREDENTIALS_DIRECTORY/${credential}")"
    export ${keyEnv}
    exec ${lib.escapeShellArgs command}
  '';
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

    answer = {
      instance = mkOption {
        type = types.nullOr types.str;
        default = if vllmInstances ? llm then "llm" else null;
        defaultText = lib.literalExpression ''if config.services.vllm-api.instances ? llm then "llm" else null'';
        example = "qwen";
        description = ''
          The services.vllm-api instance that writes answers: `baseUrl` and
          `model` default to its address and served model name. Default: the
          instance named `llm`, when there is one.
        '';
      };

      baseUrl = mkOption {
        type = types.nullOr types.str;
        default = if instance != null then "http://${localHost instance.host}:${toString instance.port}/v1" else null;
        defaultText = lib.literalExpression ''"http://127.0.0.1:''${port of services.vllm-api.instances.''${answer.instance}}/v1"'';
        example = "http://127.0.0.1:11434/v1";
        description = ''
          OpenAI-compatible chat endpoint of the LLM that answers
          (`--set answer.base_url=...`): a vLLM server, or Ollama at
          `http://127.0.0.1:11434/v1`. null: no answers (`/v1/answer` says so
          with a 503; search is unaffected). No password in the URL.
        '';
      };

      model = mkOption {
        type = types.nullOr types.nonEmptyStr;
        default = if instance != null then servedName instance else null;
        defaultText = lib.literalExpression "the instance's --served-model-name, else its model";
        example = "qwen2.5:7b-instruct";
        description = "The model name the endpoint serves (`--set answer.model=...`; for Ollama, a pulled tag).";
      };

      apiKeyEnv = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "LLM_API_KEY";
        description = ''
          Name of the environment variable that holds the endpoint's API key
          (`--set answer.api_key_env=...`), set in `environmentFile`, or from
          `apiKeyFile` (default name then: EVOLVE_LLM_API_KEY). A local vLLM or
          Ollama needs none.
        '';
      };

      apiKeyFile = mkOption {
        type = types.nullOr (types.strMatching "/.*");
        default = null;
        example = "/run/secrets/llm-api-key";
        description = ''
          A file holding only the API key, read at start through systemd's
          LoadCredential= (so the service user need not own it) and exported
          as `apiKeyEnv`. A string path outside the Nix store (sops-nix,
          agenix, or a file placed by hand).
        '';
      };

      maxAnswers = mkOption {
        type = types.nullOr types.ints.positive;
        default = null;
        example = 4;
        description = "Concurrent LLM calls (`--max-answers`); past it an answer gets 429 while search keeps serving.";
      };

      settings = mkOption {
        type = types.attrsOf (
          types.oneOf [
            types.str
            types.int
            types.float
            types.bool
          ]
        );
        default = { };
        example = {
          context_tokens = 3000;
          temperature = 0.1;
        };
        description = "Further `answer:` config keys (`--set answer.KEY=VALUE`), as docs/answer.md lists them.";
      };
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
      (util.passwordAssertion "services.evolve-serve.answer.baseUrl" "services.evolve-serve.environmentFile" ans.baseUrl)
      {
        assertion = ans.instance == null || vllmInstances ? ${ans.instance};
        message = "services.evolve-serve.answer.instance is '${toString ans.instance}', but services.vllm-api.instances has no such instance (it has: ${lib.concatStringsSep ", " (lib.attrNames vllmInstances)}).";
      }
      {
        assertion = (ans.baseUrl == null) == (ans.model == null);
        message = "services.evolve-serve.answer: baseUrl and model go together (set both, or neither): got baseUrl ${if ans.baseUrl == null then "null" else "'${ans.baseUrl}'"} and model ${if ans.model == null then "null" else "'${ans.model}'"}.";
      }
      {
        assertion = ans.apiKeyFile == null || !(lib.hasPrefix builtins.storeDir ans.apiKeyFile);
        message = "services.evolve-serve.answer.apiKeyFile is in the Nix store (${toString ans.apiKeyFile}), where every user can read it: give a string path such as \"/run/secrets/llm-api-key\".";
      }
      {
        assertion = ans.apiKeyEnv == null || ans.apiKeyFile != null || cfg.environmentFile != null;
        message = "services.evolve-serve.answer.apiKeyEnv names a variable but nothing sets it: put ${toString ans.apiKeyEnv}=... into services.evolve-serve.environmentFile, or set answer.apiKeyFile.";
      }
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
        ExecStart = if ans.apiKeyFile != null then "${startScript}" else util.escapeExecArgs command;
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
      // lib.optionalAttrs (cfg.environmentFile != null) { EnvironmentFile = cfg.environmentFile; }
      // lib.optionalAttrs (ans.apiKeyFile != null) { LoadCredential = "${credential}:${ans.apiKeyFile}"; };
    };
  };
}
