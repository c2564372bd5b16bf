# Used only where nixpkgs has no json-repair.
{
  lib,
  buildPythonPackage,
  fetchPypi,
  setuptools,
}:

buildPythonPackage rec {
  pname = "json-repair";
  version = "0.64.6";
  pyproject = true;

  src = fetchPypi {
    pname = "json_repair";
    inherit version;
    hash = "sha256-Io73vJJOLUaD/qgQwLLJ9cQJhKnkUdm7Vo0laYT6OSw=";
  };

  build-system = [ setuptools ];

  doCheck = false;

  pythonImportsCheck = [ "json_repair" ];

  meta = {
    description = "Repair invalid JSON, as local LLMs write it";
    homepage = "https://github.com/mangiucugna/json_repair";
    license = lib.licenses.mit;
  };
}
