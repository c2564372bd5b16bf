# Stand-in for a nixpkgs package set (`import nixpkgs { ... }`), offline only.
#
# Every package is a trivial derivation (`builtins.derivation`, builder
# /bin/sh, never built), so `nix flake check --no-build` can instantiate
# evolve's outputs.  What it does check, as nixpkgs would:
#   - callPackage: every argument a Nix file asks for exists in the set;
#   - buildPythonPackage/Application: `pyproject`/`build-system` given, every
#     dependency a derivation built for the *same* Python (nixpkgs'
#     "built for python3.X but is being used with python3.Y" check);
#   - fetchPypi: a real-looking SRI sha256 (no lib.fakeHash, no placeholder);
#   - CUDA packages refuse to evaluate with cudaSupport but without allowUnfree;
#   - testers.runNixOSTest evaluates its nodes with the module stand-in
#     (assertions enforced) and puts the generated units into the derivation.
{
  system ? "x86_64-linux",
  config ? { },
  overlays ? [ ],
  ...
}:
let
  lib = import ./lib.nix;
  inherit (lib)
    attrNames
    concatMap
    filter
    functionArgs
    head
    intersectAttrs
    isAttrs
    isDerivation
    isFunction
    isList
    isPath
    isString
    ;

  cfg = {
    allowUnfree = false;
    cudaSupport = false;
  }
  // config;

  # a derivation that is never built; `inputs` make the dependency graph real
  mkDrv =
    {
      name,
      inputs ? [ ],
      extraEnv ? { },
      passthru ? { },
      meta ? { },
    }:
    let
      drv = derivation (
        {
          inherit name system;
          builder = "/bin/sh";
          args = [
            "-c"
            "echo evolve-nix-stand-in > $out"
          ];
          inputs = filter (x: isDerivation x || isPath x) inputs;
        }
        // extraEnv
      );
    in
    drv
    // passthru
    // {
      inherit meta passthru;
    };

  fetchPypi =
    {
      pname,
      version,
      hash ? null,
      sha256 ? null,
      format ? "setuptools",
      extension ? (if format == "wheel" then "whl" else "tar.gz"),
      dist ? null,
      python ? null,
      abi ? null,
      platform ? null,
    }:
    let
      h = if hash != null then hash else sha256;
      first = builtins.substring 0 1 pname;
    in
    if h == null then
      throw "fetchPypi ${pname}-${version}: no hash given"
    else if h == lib.fakeHash || builtins.match "sha256-[A-Za-z0-9+/]{43}=" h == null then
      throw "fetchPypi ${pname}-${version}: `${h}' is not a real SRI sha256 hash"
    else
      derivation {
        name = "${pname}-${version}.${extension}";
        inherit system;
        builder = "/bin/sh";
        args = [
          "-c"
          "exit 1"
        ];
        url = "mirror://pypi/${first}/${pname}/${pname}-${version}.${extension}";
        outputHash = h;
        outputHashMode = "flat";
      };

  mkPython =
    {
      version,
      overrides ? (_: _: { }),
    }:
    let
      interp =
        mkDrv { name = "python3-${version}"; }
        // {
          inherit version;
          pythonVersion = version;
          executable = "python${version}";
          sitePackages = "lib/python${version}/site-packages";
          interpreter = "${interp}/bin/python${version}";
        };
      python = interp // {
        pkgs = pySet;
        override =
          {
            self ? null,
            packageOverrides ? (_: _: { }),
            ...
          }:
          mkPython {
            inherit version;
            overrides = lib.composeExtensions overrides packageOverrides;
          };
        withPackages =
          f:
          mkDrv {
            name = "python${version}-env";
            inputs = f pySet;
          };
      };
      pySet = lib.fix (lib.extends overrides (basePySet python));
    in
    python;

  # the Python packages evolve's Nix files refer to (nixpkgs attribute names)
  pyNames = [
    "bm25s"
    "build"
    "cbor2"
    "fastapi"
    "fastparquet"
    "hatchling"
    "httpx"
    "huggingface-hub"
    "ir-datasets"
    "lz4"
    "matplotlib"
    "mlflow"
    "numba"
    "numpy"
    "optuna"
    "orjson"
    "pandas"
    "pip"
    "psycopg"
    "pydantic"
    "pystemmer"
    "pytest"
    "pytestCheckHook"
    "pyyaml"
    "requests"
    "rich"
    "scipy"
    "seaborn"
    "sentence-transformers"
    "setuptools"
    "tabulate"
    "tqdm"
    "transformers"
    "typer"
    "uvicorn"
    "wheel"
  ];
  # built with CUDA when config.cudaSupport; unfree then
  cudaNames = [
    "faiss"
    "torch"
    "vllm"
  ];

  basePySet =
    python: final:
    let
      version = python.pythonVersion;
      stubPy =
        extra: name:
        mkDrv {
          name = "python${version}-${name}-stand-in";
          passthru = {
            pname = name;
            pythonModule = python;
          }
          // extra;
        };
      cudaPy =
        name:
        if cfg.cudaSupport && !cfg.allowUnfree then
          throw "Package ‘python${version}-${name}’ has an unfree license (CUDA), refusing to evaluate (set allowUnfree)."
        else
          stubPy { inherit (cfg) cudaSupport; } name;

      buildPy =
        isApp: argsOrFn:
        let
          a = if isFunction argsOrFn then lib.fix argsOrFn else argsOrFn;
          pname = a.pname or (throw "buildPython*: no pname");
          deps = a.dependencies or [ ] ++ a.propagatedBuildInputs or [ ];
          buildSys = a.build-system or [ ] ++ a.nativeBuildInputs or [ ];
          checkDrv =
            what: d:
            if !(isDerivation d) then
              throw "${pname}: ${what} contains ${lib.typeOf d}, not a package"
            else if d ? pythonModule && d.pythonModule != python then
              throw "${d.name} was built for ${d.pythonModule.name} but is being used with ${python.name}: Python package sets are mixed"
            else
              d;
          checkedDeps = map (checkDrv "dependencies") deps;
          checkedBuild = map (checkDrv "build-system") buildSys;
        in
        if !(a ? pyproject || a ? format) then
          throw "${pname}: buildPython* needs `pyproject = true' (or `format')"
        else if (a.pyproject or false) && buildSys == [ ] then
          throw "${pname}: `pyproject = true' without `build-system'"
        else if !(isList (a.pythonImportsCheck or [ ])) then
          throw "${pname}: pythonImportsCheck must be a list"
        else
          mkDrv {
            name = "${if isApp then "" else "python${version}-"}${pname}-${a.version}";
            inputs =
              checkedDeps ++ checkedBuild ++ a.buildInputs or [ ] ++ lib.optional (a ? src) a.src;
            extraEnv = {
              pythonImportsCheck = a.pythonImportsCheck or [ ];
            };
            passthru =
              (a.passthru or { })
              // {
                inherit pname;
                inherit (a) version;
                dependencies = checkedDeps;
                optional-dependencies = a.optional-dependencies or { };
              }
              // lib.optionalAttrs (!isApp) { pythonModule = python; };
            meta = a.meta or { };
          };
    in
    lib.genAttrs pyNames (stubPy { })
    // lib.genAttrs cudaNames cudaPy
    // {
      inherit python fetchPypi;
      pythonOlder = v: lib.versionOlder version v;
      pythonAtLeast = v: lib.versionAtLeast version v;
      buildPythonPackage = buildPy false;
      buildPythonApplication = buildPy true;
      toPythonModule = d: d // { pythonModule = python; };
      callPackage =
        fn: args:
        let
          f = if isPath fn || isString fn then import fn else fn;
          fa = functionArgs f;
          scope = pkgs // final;
          missing = filter (n: !fa.${n} && !(args ? ${n}) && !(scope ? ${n})) (attrNames fa);
        in
        if missing != [ ] then
          throw "callPackage ${toString fn}: argument `${head missing}' is in neither python${version}Packages nor pkgs"
        else
          f (intersectAttrs fa scope // args);
    };

  nixosFor = pkgs: import ./nixos.nix { inherit lib pkgs; };

  base = self: {
    inherit lib system;
    config = cfg;
    stdenv = {
      hostPlatform = {
        inherit system;
        isLinux = true;
        isx86_64 = system == "x86_64-linux";
        isAarch64 = system == "aarch64-linux";
      };
      buildPlatform = self.stdenv.hostPlatform;
      cc.cc.lib = mkDrv { name = "gcc-lib-stand-in"; };
      mkDerivation =
        a:
        mkDrv {
          name = a.name or "${a.pname}-${a.version}";
          inputs = a.buildInputs or [ ] ++ a.nativeBuildInputs or [ ];
        };
    };
    callPackage =
      fn: args:
      let
        f = if isPath fn || isString fn then import fn else fn;
      in
      f (intersectAttrs (functionArgs f) self // args);

    python312 = mkPython { version = "3.12"; };
    python313 = mkPython { version = "3.13"; };
    python3 = self.python313;
    python312Packages = self.python312.pkgs;
    python313Packages = self.python313.pkgs;
    python3Packages = self.python3.pkgs;

    autoPatchelfHook = mkDrv { name = "auto-patchelf-hook-stand-in"; };
    bash = mkDrv { name = "bash-stand-in"; meta.mainProgram = "bash"; };
    coreutils = mkDrv { name = "coreutils-stand-in"; };
    curl = mkDrv { name = "curl-stand-in"; meta.mainProgram = "curl"; };
    cmake = mkDrv { name = "cmake-stand-in"; meta.mainProgram = "cmake"; };
    git = mkDrv { name = "git-stand-in"; meta.mainProgram = "git"; };
    kmod = mkDrv { name = "kmod-stand-in"; };
    ruff = mkDrv { name = "ruff-stand-in"; meta.mainProgram = "ruff"; };
    ollama = mkDrv {
      name = "ollama-stand-in";
      meta.mainProgram = "ollama";
    };
    mlflow-server = mkDrv {
      name = "mlflow-server-stand-in";
      meta.mainProgram = "mlflow";
    };

    writeText =
      name: text:
      mkDrv {
        inherit name;
        extraEnv = { inherit text; };
      };
    writeShellScript =
      name: text:
      mkDrv {
        inherit name;
        extraEnv = { inherit text; };
      };
    runCommand =
      name: env: script:
      mkDrv {
        inherit name;
        extraEnv = { inherit script; };
      };
    mkShell =
      {
        name ? "nix-shell",
        packages ? [ ],
        inputsFrom ? [ ],
        shellHook ? "",
        ...
      }:
      mkDrv {
        inherit name;
        inputs = packages ++ inputsFrom;
        extraEnv = { inherit shellHook; };
      };

    testers.runNixOSTest =
      test:
      let
        t = if isFunction test then test { pkgs = self; inherit lib; } else test;
        allowed = [
          "name"
          "nodes"
          "testScript"
          "defaults"
          "skipLint"
          "skipTypeCheck"
          "globalTimeout"
          "extraPythonPackages"
          "interactive"
          "meta"
          "enableOCR"
          "passthru"
        ];
        bad = attrNames (removeAttrs t allowed);
        nodes = lib.mapAttrs (
          _: m: (nixosFor self).evalSystem ([ m ] ++ lib.optional (t ? defaults) t.defaults)
        ) t.nodes;
        script = if isFunction t.testScript then t.testScript { inherit nodes; } else t.testScript;
        units = builtins.toJSON (
          lib.mapAttrs (_: c: {
            services = lib.mapAttrs (_: s: {
              inherit (s)
                serviceConfig
                environment
                after
                wants
                wantedBy
                onFailure
                ;
            }) c.systemd.services;
            timers = lib.mapAttrs (_: tm: tm.timerConfig) c.systemd.timers;
          }) nodes
        );
      in
      if bad != [ ] then
        throw "runNixOSTest: unknown attribute `${head bad}'"
      else if !(isString script) then
        throw "runNixOSTest: testScript must be a string"
      else
        mkDrv {
          name = "vm-test-run-${t.name}";
          extraEnv = {
            testScript = script;
            inherit units;
          };
        };
  };

  pkgs = lib.fix (builtins.foldl' (f: o: lib.extends o f) base overlays);
in
pkgs
