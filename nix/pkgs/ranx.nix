{
  lib,
  buildPythonPackage,
  fetchPypi,
  setuptools,
  numpy,
  numba,
  pandas,
  tabulate,
  tqdm,
  scipy,
  ir-datasets,
  rich,
  orjson,
  lz4,
  cbor2,
  seaborn,
  fastparquet,
}:

buildPythonPackage rec {
  pname = "ranx";
  version = "0.3.21";
  pyproject = true;

  src = fetchPypi {
    inherit pname version;
    hash = "sha256-ou3qlZOo8cnZtyb40oFjT3bxLylPI+5LityRPJZLjhQ=";
  };

  build-system = [ setuptools ];

  dependencies = [
    numpy
    numba
    pandas
    tabulate
    tqdm
    scipy
    ir-datasets
    rich
    orjson
    lz4
    cbor2
    seaborn
    fastparquet
  ];

  # numba caches compiled functions next to the sources unless told otherwise;
  # keep that out of $out
  preBuild = ''
    export NUMBA_CACHE_DIR="$TMPDIR/numba-cache"
  '';

  # the test suite downloads runs and qrels
  doCheck = false;

  pythonImportsCheck = [ "ranx" ];

  meta = {
    description = "Ranking evaluation, comparison and fusion (trec_eval metrics, numba-accelerated)";
    homepage = "https://github.com/AmenRa/ranx";
    license = lib.licenses.mit;
  };
}
