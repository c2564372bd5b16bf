{
  lib,
  buildPythonPackage,
  fetchPypi,
  setuptools,
}:

buildPythonPackage rec {
  pname = "kiwipiepy-model";
  version = "0.24.0";
  pyproject = true;

  src = fetchPypi {
    pname = "kiwipiepy_model";
    inherit version;
    hash = "sha256-VcmVBZhOT9maCP8q7Yq+lb5pEdYaEyEC7vQPY0GOHSE=";
  };

  build-system = [ setuptools ];

  # data only: the Kiwi language model files
  doCheck = false;

  pythonImportsCheck = [ "kiwipiepy_model" ];

  meta = {
    description = "Model files for kiwipiepy, the Korean morphological analyzer";
    homepage = "https://github.com/bab2min/kiwipiepy";
    license = lib.licenses.asl20;
  };
}
