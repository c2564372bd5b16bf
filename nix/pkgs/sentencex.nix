# Used only where nixpkgs has no sentencex.  sentencex is Rust (maturin); its
# crates cannot be vendored offline here, so this installs PyPI's manylinux
# wheel for the set's Python (3.12 or 3.13), patched by autoPatchelfHook.
{
  lib,
  stdenv,
  buildPythonPackage,
  fetchPypi,
  python,
  autoPatchelfHook,
}:

let
  wheels = {
    "3.12" = {
      tag = "cp312";
      hash = "sha256-BNnNyQ5wzwCCKCBLa34VyJNNdOEKTnc3+sJ6YVuwJqk=";
    };
    "3.13" = {
      tag = "cp313";
      hash = "sha256-bFxnm60K86E7VWYyzrhHk06ownSA5QkPhDTJxtWx+e0=";
    };
  };
  wheel =
    wheels.${python.pythonVersion}
      or (throw "sentencex.nix: no wheel pinned for Python ${python.pythonVersion} (pinned: 3.12, 3.13)");
in
buildPythonPackage rec {
  pname = "sentencex";
  version = "1.0.32";
  format = "wheel";

  src = fetchPypi {
    inherit pname version;
    format = "wheel";
    dist = wheel.tag;
    python = wheel.tag;
    abi = wheel.tag;
    platform = "manylinux_2_17_x86_64.manylinux2014_x86_64";
    inherit (wheel) hash;
  };

  nativeBuildInputs = [ autoPatchelfHook ];
  buildInputs = [ stdenv.cc.cc.lib ];

  pythonImportsCheck = [ "sentencex" ];

  meta = {
    description = "Sentence segmentation for many languages (Wikimedia)";
    homepage = "https://github.com/wikimedia/sentencex";
    license = lib.licenses.mit;
    platforms = [ "x86_64-linux" ];
  };
}
