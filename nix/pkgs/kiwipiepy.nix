{
  lib,
  buildPythonPackage,
  fetchPypi,
  setuptools,
  cmake,
  numpy,
  tqdm,
  kiwipiepy-model,
}:

buildPythonPackage rec {
  pname = "kiwipiepy";
  version = "0.24.1";
  pyproject = true;

  # the sdist carries Kiwi's C++ sources and its third-party libraries
  src = fetchPypi {
    inherit pname version;
    hash = "sha256-tbFNMmlBnTyqpgoCWZkcsfVEsmqb0jBsYZ+w6irK19w=";
  };

  build-system = [ setuptools ];

  # setup.py runs CMake itself
  nativeBuildInputs = [ cmake ];
  dontUseCmakeConfigure = true;

  dependencies = [
    numpy
    tqdm
    kiwipiepy-model
  ];

  # upstream's tests load the full model and take minutes
  doCheck = false;

  pythonImportsCheck = [ "kiwipiepy" ];

  meta = {
    description = "Kiwi, the Korean morphological analyzer, for Python";
    homepage = "https://github.com/bab2min/kiwipiepy";
    license = lib.licenses.asl20;
  };
}
