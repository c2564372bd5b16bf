# Used only where nixpkgs has no bm25s (it does since 2024).
{
  lib,
  buildPythonPackage,
  fetchPypi,
  setuptools,
  numpy,
}:

buildPythonPackage rec {
  pname = "bm25s";
  version = "0.3.16";
  pyproject = true;

  src = fetchPypi {
    inherit pname version;
    hash = "sha256-ljAfmVWMIxioiav+G8J89T3CJfOGDN8DsKql5y+PSi4=";
  };

  build-system = [ setuptools ];

  # setup.py reads the version from here before it tries git
  env.BM25S_VERSION = version;

  dependencies = [ numpy ];

  doCheck = false;

  pythonImportsCheck = [ "bm25s" ];

  meta = {
    description = "Fast BM25 in pure Python, on numpy and scipy sparse matrices";
    homepage = "https://github.com/xhluca/bm25s";
    license = lib.licenses.mit;
  };
}
