# Stand-in for nixpkgs' `lib`, for offline checks only (nixpkgs cannot be fetched here).
#
# It carries just the functions evolve's Nix code uses, with the names and the
# semantics of nixpkgs 25.05's lib, plus a small module system (evalModules,
# mkOption, types, mkIf/mkMerge/mkOverride) that type-checks every definition,
# rejects undeclared options and merges definitions the way nixpkgs does.
# Anything evolve's Nix code uses that is missing here fails the offline checks,
# which keeps the code within the 25.05 lib API.
let
  inherit (builtins)
    all
    any
    attrNames
    attrValues
    concatLists
    concatStringsSep
    elem
    elemAt
    filter
    foldl'
    functionArgs
    genList
    hasAttr
    head
    intersectAttrs
    isAttrs
    isBool
    isFloat
    isFunction
    isInt
    isList
    isPath
    isString
    length
    listToAttrs
    mapAttrs
    match
    replaceStrings
    sort
    stringLength
    substring
    tail
    toJSON
    typeOf
    ;

  # ---------------------------------------------------------------- lists, attrs, strings
  optional = cond: x: if cond then [ x ] else [ ];
  optionals = cond: xs: if cond then xs else [ ];
  optionalString = cond: s: if cond then s else "";
  optionalAttrs = cond: as: if cond then as else { };
  concatMap = f: xs: concatLists (map f xs);
  concatStrings = concatStringsSep "";
  concatMapStrings = f: xs: concatStringsSep "" (map f xs);
  concatMapStringsSep = sep: f: xs: concatStringsSep sep (map f xs);
  imap0 = f: xs: genList (i: f i (elemAt xs i)) (length xs);
  imap1 = f: xs: genList (i: f (i + 1) (elemAt xs i)) (length xs);
  last = xs: elemAt xs (length xs - 1);
  unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
  toList = x: if isList x then x else [ x ];
  nameValuePair = name: value: { inherit name value; };
  mapAttrsToList = f: as: map (n: f n as.${n}) (attrNames as);
  mapAttrs' = f: as: listToAttrs (mapAttrsToList f as);
  filterAttrs =
    pred: as:
    listToAttrs (concatMap (n: optional (pred n as.${n}) (nameValuePair n as.${n})) (attrNames as));
  genAttrs = names: f: listToAttrs (map (n: nameValuePair n (f n)) names);
  attrByPath =
    path: default: set:
    if path == [ ] then
      set
    else if isAttrs set && set ? ${head path} then
      attrByPath (tail path) default set.${head path}
    else
      default;
  recursiveUpdate =
    a: b:
    a
    // mapAttrs (
      n: bv: if isAttrs bv && a ? ${n} && isAttrs a.${n} && !(isDerivation bv) then recursiveUpdate a.${n} bv else bv
    ) b;
  isDerivation = x: isAttrs x && (x.type or null) == "derivation";
  hasPrefix = pre: s: substring 0 (stringLength pre) s == pre;
  removePrefix =
    pre: s:
    if hasPrefix pre s then substring (stringLength pre) (stringLength s - stringLength pre) s else s;
  hasSuffix =
    suf: s:
    let
      ls = stringLength s;
      lf = stringLength suf;
    in
    lf <= ls && substring (ls - lf) lf s == suf;
  hasInfix = infix: s: match ".*${escapeRegex infix}.*" s != null;
  escapeRegex = replaceStrings (map (c: c) (stringToChars "\\[{()^$?*+|.")) (
    map (c: "\\${c}") (stringToChars "\\[{()^$?*+|.")
  );
  stringToChars = s: genList (i: substring i 1 s) (stringLength s);
  upperChars = stringToChars "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  lowerChars = stringToChars "abcdefghijklmnopqrstuvwxyz";
  toLower = replaceStrings upperChars lowerChars;
  toUpper = replaceStrings lowerChars upperChars;
  splitString =
    sep: s: filter isString (builtins.split (escapeRegex sep) s);
  # nixpkgs: quote only when the string has characters outside a safe set
  escapeShellArg =
    arg:
    let
      string = toString arg;
    in
    if match "[[:alnum:],._+:@%/-]+" string == null then
      "'${replaceStrings [ "'" ] [ "'\\''" ] string}'"
    else
      string;
  escapeShellArgs = concatMapStringsSep " " escapeShellArg;
  makeBinPath = concatMapStringsSep ":" (p: "${p}/bin");
  getExe =
    p:
    if p ? meta.mainProgram then
      "${p}/bin/${p.meta.mainProgram}"
    else
      throw "lib.getExe: package ${p.name or "?"} has no meta.mainProgram";
  getExe' = p: name: "${p}/bin/${name}";
  fix =
    f:
    let
      x = f x;
    in
    x;
  extends =
    overlay: f: final:
    let
      prev = f final;
    in
    prev // overlay final prev;
  composeExtensions =
    f: g: final: prev:
    let
      fApplied = f final prev;
      prev' = prev // fApplied;
    in
    fApplied // g final prev';
  importTOML = path: builtins.fromTOML (builtins.readFile path);
  importJSON = path: builtins.fromJSON (builtins.readFile path);
  literalExpression = text: {
    _type = "literalExpression";
    inherit text;
  };
  literalMD = text: {
    _type = "literalMD";
    inherit text;
  };
  versionAtLeast = v1: v2: builtins.compareVersions v1 v2 >= 0;
  versionOlder = v1: v2: builtins.compareVersions v1 v2 < 0;
  sourceByRegex = throw "lib.sourceByRegex is not in the stand-in";

  # ---------------------------------------------------------------- module system
  showOption = concatStringsSep ".";
  showVal =
    v:
    if isDerivation v then
      "<derivation ${v.name or "?"}>"
    else if isFunction v then
      "<function>"
    else
      let
        r = builtins.tryEval (toJSON v);
      in
      if r.success then r.value else "<${typeOf v}>";
  showFiles = files: concatStringsSep ", " (unique files);

  mkOption =
    {
      default ? null,
      defaultText ? null,
      example ? null,
      description ? null,
      relatedPackages ? null,
      type ? null,
      apply ? null,
      internal ? null,
      visible ? null,
      readOnly ? null,
    }@attrs:
    attrs // { _type = "option"; };
  mkEnableOption =
    name:
    mkOption {
      default = false;
      example = true;
      description = "Whether to enable ${name}.";
      type = types.bool;
    };
  mkPackageOption = throw "lib.mkPackageOption is not in the stand-in: declare the option with mkOption";
  isOption = x: isAttrs x && (x._type or null) == "option";

  mkIf = condition: content: {
    _type = "if";
    inherit condition content;
  };
  mkMerge = contents: {
    _type = "merge";
    inherit contents;
  };
  mkOverride = priority: content: {
    _type = "override";
    inherit priority content;
  };
  mkOptionDefault = mkOverride 1500;
  mkDefault = mkOverride 1000;
  mkForce = mkOverride 50;
  mkVMOverride = mkOverride 10;
  mkOrder = priority: content: {
    _type = "order";
    inherit priority content;
  };
  mkBefore = mkOrder 500;
  mkAfter = mkOrder 1500;
  defaultOrderPriority = 1000;

  kind = v: if isAttrs v then v._type or null else null;

  # Push mkMerge/mkIf/mkOverride through an attribute set: a list of plain
  # attribute sets whose values carry the conditions (conditions unevaluated).
  pushDown =
    loc: file: cfg:
    let
      k = kind cfg;
    in
    if k == "merge" then
      concatMap (pushDown loc file) cfg.contents
    else if k == "if" then
      map (mapAttrs (_: mkIf cfg.condition)) (pushDown loc file cfg.content)
    else if k == "override" then
      map (mapAttrs (_: mkOverride cfg.priority)) (pushDown loc file cfg.content)
    else if isAttrs cfg && !(isDerivation cfg) then
      [ cfg ]
    else
      throw "The option `${showOption loc}' is an attribute set of options, but ${file} defines it as ${showVal cfg}.";

  # Resolve mkIf/mkMerge: a list of definition values (mkOverride/mkOrder kept).
  discharge =
    v:
    let
      k = kind v;
    in
    if k == "merge" then
      concatMap discharge v.contents
    else if k == "if" then
      if !isBool v.condition then
        throw "mkIf called with a non-Boolean condition"
      else if v.condition then
        discharge v.content
      else
        [ ]
    else if k == "override" then
      map (mkOverride v.priority) (discharge v.content)
    else if k == "order" then
      map (mkOrder v.priority) (discharge v.content)
    else
      [ v ];

  # definitions -> the values that count: mkIf resolved, highest priority kept, mkOrder applied
  resolveDefs =
    defs:
    let
      flat = concatMap (d: map (v: d // { value = v; }) (discharge d.value)) defs;
      prio = d: if kind d.value == "override" then d.value.priority else 100;
      best = foldl' (m: d: if prio d < m then prio d else m) 9999 flat;
      kept = map (d: if kind d.value == "override" then d // { value = d.value.content; } else d) (
        filter (d: prio d == best) flat
      );
      ord = d: if kind d.value == "order" then d.value.priority else defaultOrderPriority;
      sorted = sort (a: b: ord a < ord b) kept;
    in
    map (d: if kind d.value == "order" then d // { value = d.value.content; } else d) sorted;

  # type-check and merge resolved definitions; null when none (caller decides)
  mergeDefs =
    loc: type: defs:
    let
      resolved = resolveDefs defs;
      checked = map (
        d:
        if type.check d.value then
          d
        else
          throw "A definition for option `${showOption loc}' is not of type `${type.description}'. Definition value: ${showVal d.value} (in ${d.file})"
      ) resolved;
    in
    {
      isDefined = resolved != [ ];
      value = type.merge loc checked;
    };

  evalOptionValue =
    loc: opt: defs:
    let
      type = if opt.type or null == null then types.unspecified else opt.type;
      withDefault = defs ++ optional (opt ? default) {
        file = "<default of ${showOption loc}>";
        value = mkOptionDefault opt.default;
      };
      r = mergeDefs loc type withDefault;
      value =
        if r.isDefined then
          r.value
        else
          throw "The option `${showOption loc}' was accessed but has no value defined. Try setting the option.";
    in
    if opt.apply or null != null then opt.apply value else value;

  # merge an option tree (declarations) with definitions, rejecting undeclared ones
  mergeTree =
    loc: decls: defs:
    let
      pushed = concatMap (d: map (a: d // { value = a; }) (pushDown loc d.file d.value)) defs;
      names = unique (concatMap (d: attrNames d.value) pushed);
      undeclared = filter (n: !(decls ? ${n})) names;
      defsFor = n: concatMap (d: optional (d.value ? ${n}) (d // { value = d.value.${n}; })) pushed;
      firstBad = head undeclared;
      badFiles = map (d: d.file) (filter (d: d.value ? ${firstBad}) pushed);
    in
    if undeclared != [ ] then
      throw "The option `${showOption (loc ++ [ firstBad ])}' does not exist. Definition values: in ${showFiles badFiles}"
    else
      mapAttrs (
        n: decl:
        if isOption decl then
          evalOptionValue (loc ++ [ n ]) decl (defsFor n)
        else
          mergeTree (loc ++ [ n ]) decl (defsFor n)
      ) decls;

  mergeDecls =
    loc: a: b:
    a
    // mapAttrs (
      n: bv:
      if !(a ? ${n}) then
        bv
      else if isOption bv || isOption a.${n} then
        throw "The option `${showOption (loc ++ [ n ])}' is declared multiple times."
      else
        mergeDecls (loc ++ [ n ]) a.${n} bv
    ) b;

  unifyModule =
    file: m:
    if !(isAttrs m) then
      throw "module ${file}: expected a module (an attribute set or a function returning one), got ${typeOf m}"
    else if m ? config || m ? options then
      let
        bad = attrNames (
          removeAttrs m [
            "_class"
            "_file"
            "key"
            "disabledModules"
            "imports"
            "options"
            "config"
            "meta"
            "freeformType"
          ]
        );
      in
      if bad != [ ] then
        throw "Module `${file}' has an unsupported attribute `${head bad}'. This is caused by introducing a top-level `config' or `options' attribute. Add configuration attributes immediately on the top level instead, or move all of them (namely: ${concatStringsSep " " bad}) into the explicit `config' attribute."
      else
        {
          imports = m.imports or [ ];
          options = m.options or { };
          config = m.config or { };
        }
    else
      {
        imports = m.imports or [ ];
        options = { };
        config = removeAttrs m [
          "_class"
          "_file"
          "key"
          "disabledModules"
          "imports"
          "meta"
        ];
      };

  evalModules =
    {
      modules,
      specialArgs ? { },
      prefix ? [ ],
    }:
    let
      allArgs =
        {
          inherit lib config options;
        }
        // specialArgs;
      load =
        parentKey: i: m:
        let
          isFile = isPath m || isString m;
          raw = if isFile then import m else m;
          val = if isFunction raw then raw (intersectAttrs (functionArgs raw) allArgs) else raw;
          file =
            if isFile then
              toString m
            else if isAttrs val && val ? _file then
              toString val._file
            else
              parentKey;
          key =
            if isFile then
              toString m
            else if isAttrs val && val ? key then
              toString val.key
            else
              "${parentKey}:anon-${toString i}";
        in
        {
          inherit key file;
          module = unifyModule file val;
        };
      closure = builtins.genericClosure {
        startSet = imap0 (load "<evalModules>") modules;
        operator = item: imap0 (load item.key) item.module.imports;
      };
      options = foldl' (mergeDecls prefix) { } (map (x: x.module.options) closure);
      config = mergeTree prefix options (
        map (x: {
          inherit (x) file;
          value = x.module.config;
        }) closure
      );
    in
    {
      inherit config options;
    };

  # ---------------------------------------------------------------- types
  mergeEqualOption =
    loc: defs:
    let
      first = head defs;
    in
    if defs == [ ] then
      throw "The option `${showOption loc}' has no definitions."
    else if all (d: d.value == first.value) defs then
      first.value
    else
      throw "The option `${showOption loc}' has conflicting definition values: ${
        concatMapStringsSep "; " (d: "${showVal d.value} in ${d.file}") defs
      }";
  mergeOneOption =
    loc: defs:
    if length defs == 1 then
      (head defs).value
    else
      throw "The unique option `${showOption loc}' is defined multiple times, in ${showFiles (map (d: d.file) defs)}.";

  mkOptionType =
    {
      name,
      description ? name,
      check ? (_: true),
      merge ? mergeEqualOption,
      ...
    }@attrs:
    attrs
    // {
      _type = "option-type";
      inherit
        name
        description
        check
        merge
        ;
    };

  isStringLike = x: isString x || isPath x || (isAttrs x && (x ? outPath || x ? __toString));

  types = rec {
    unspecified = mkOptionType { name = "unspecified"; };
    raw = mkOptionType {
      name = "raw";
      merge = mergeOneOption;
    };
    bool = mkOptionType {
      name = "bool";
      description = "boolean";
      check = isBool;
    };
    int = mkOptionType {
      name = "int";
      description = "signed integer";
      check = isInt;
    };
    float = mkOptionType {
      name = "float";
      description = "floating point number";
      check = isFloat;
    };
    number = either int float;
    ints = rec {
      between =
        lo: hi:
        mkOptionType {
          name = "intBetween";
          description = "integer between ${toString lo} and ${toString hi} (both inclusive)";
          check = x: isInt x && x >= lo && x <= hi;
        };
      positive = mkOptionType {
        name = "positiveInt";
        description = "positive integer, meaning >0";
        check = x: isInt x && x > 0;
      };
      unsigned = mkOptionType {
        name = "unsignedInt";
        description = "unsigned integer, meaning >=0";
        check = x: isInt x && x >= 0;
      };
      u16 = between 0 65535 // {
        description = "16 bit unsigned integer; between 0 and 65535 (both inclusive)";
      };
    };
    port = ints.u16;
    str = mkOptionType {
      name = "str";
      description = "string";
      check = isString;
    };
    nonEmptyStr = mkOptionType {
      name = "nonEmptyStr";
      description = "non-empty string";
      check = x: isString x && match "[ \t\n]*" x == null;
    };
    strMatching =
      pattern:
      mkOptionType {
        name = "strMatching ${toJSON pattern}";
        description = "string matching the pattern ${pattern}";
        check = x: isString x && match pattern x != null;
      };
    lines = mkOptionType {
      name = "lines";
      description = "strings concatenated with \"\\n\"";
      check = isString;
      merge = _: defs: concatStringsSep "\n" (map (d: d.value) defs);
    };
    path = mkOptionType {
      name = "path";
      description = "absolute path";
      check = x: isStringLike x && substring 0 1 (toString x) == "/";
    };
    package = mkOptionType {
      name = "package";
      description = "package";
      check = x: isDerivation x || (isString x && hasPrefix builtins.storeDir x);
      merge = mergeOneOption;
    };
    enum =
      values:
      mkOptionType {
        name = "enum";
        description = "one of ${concatMapStringsSep ", " showVal values}";
        check = x: elem x values;
      };
    anything = mkOptionType {
      name = "anything";
      description = "anything";
      merge =
        loc: defs:
        let
          kinds = unique (map (d: if isDerivation d.value then "derivation" else typeOf d.value) defs);
          k = head kinds;
        in
        if length kinds > 1 then
          throw "The option `${showOption loc}' has conflicting definitions, in ${showFiles (map (d: d.file) defs)}."
        else if k == "set" then
          (attrsOf anything).merge loc defs
        else if k == "list" then
          (if length defs > 1 then
            throw "The option `${showOption loc}' has conflicting definitions, in ${showFiles (map (d: d.file) defs)}."
          else
            (listOf anything).merge loc defs)
        else if k == "lambda" || k == "derivation" then
          mergeOneOption loc defs
        else
          mergeEqualOption loc defs;
    };
    nullOr =
      elemType:
      mkOptionType {
        name = "nullOr";
        description = "null or ${elemType.description}";
        check = x: x == null || elemType.check x;
        merge =
          loc: defs:
          let
            nulls = filter (d: d.value == null) defs;
          in
          if length nulls == length defs then
            null
          else if nulls != [ ] then
            throw "The option `${showOption loc}' is defined both null and not null, in ${showFiles (map (d: d.file) defs)}."
          else
            elemType.merge loc defs;
      };
    either =
      t1: t2:
      mkOptionType {
        name = "either";
        description = "${t1.description} or ${t2.description}";
        check = x: t1.check x || t2.check x;
        merge =
          loc: defs:
          if all (d: t1.check d.value) defs then
            t1.merge loc defs
          else if all (d: t2.check d.value) defs then
            t2.merge loc defs
          else
            mergeOneOption loc defs;
      };
    oneOf =
      ts:
      if ts == [ ] then throw "types.oneOf needs at least one type" else foldl' either (head ts) (tail ts);
    listOf =
      elemType:
      mkOptionType {
        name = "listOf";
        description = "list of ${elemType.description}";
        check = isList;
        merge =
          loc: defs:
          concatLists (
            imap1 (
              n: d:
              concatLists (
                imap1 (
                  m: v:
                  let
                    r = mergeDefs (loc ++ [ "[definition ${toString n}-entry ${toString m}]" ]) elemType [
                      (d // { value = v; })
                    ];
                  in
                  optional r.isDefined r.value
                ) d.value
              )
            ) defs
          );
      };
    attrsOf =
      elemType:
      mkOptionType {
        name = "attrsOf";
        description = "attribute set of (${elemType.description})";
        check = x: isAttrs x && !(isDerivation x);
        merge =
          loc: defs:
          let
            pushed = concatMap (d: map (a: d // { value = a; }) (pushDown loc d.file d.value)) defs;
            names = unique (concatMap (d: attrNames d.value) pushed);
            defsFor = n: concatMap (d: optional (d.value ? ${n}) (d // { value = d.value.${n}; })) pushed;
            merged = map (n: nameValuePair n (mergeDefs (loc ++ [ n ]) elemType (defsFor n))) names;
          in
          listToAttrs (map (x: nameValuePair x.name x.value.value) (filter (x: x.value.isDefined) merged));
      };
    lazyAttrsOf = attrsOf;
    submoduleWith =
      {
        modules,
        specialArgs ? { },
        ...
      }:
      mkOptionType {
        name = "submodule";
        description = "submodule";
        check = x: isAttrs x || isFunction x || isPath x;
        merge =
          loc: defs:
          (evalModules {
            modules =
              modules
              ++ map (d: {
                _file = d.file;
                imports = [ d.value ];
              }) defs;
            specialArgs = {
              name = last loc;
            }
            // specialArgs;
            prefix = loc;
          }).config;
        getSubOptions = prefix: (evalModules { inherit modules specialArgs prefix; }).options;
      };
    submodule = m: submoduleWith { modules = toList m; };
  };

  lib = {
    inherit
      all
      any
      attrNames
      attrValues
      concatLists
      concatStringsSep
      elem
      elemAt
      filter
      foldl'
      functionArgs
      genList
      hasAttr
      head
      intersectAttrs
      isAttrs
      isBool
      isFloat
      isFunction
      isInt
      isList
      isPath
      isString
      length
      listToAttrs
      mapAttrs
      replaceStrings
      sort
      stringLength
      substring
      tail
      typeOf
      ;
    inherit
      optional
      optionals
      optionalString
      optionalAttrs
      concatMap
      concatStrings
      concatMapStrings
      concatMapStringsSep
      imap0
      imap1
      last
      unique
      toList
      nameValuePair
      mapAttrsToList
      mapAttrs'
      filterAttrs
      genAttrs
      attrByPath
      recursiveUpdate
      isDerivation
      hasPrefix
      removePrefix
      hasSuffix
      hasInfix
      escapeRegex
      stringToChars
      toLower
      toUpper
      splitString
      escapeShellArg
      escapeShellArgs
      makeBinPath
      getExe
      getExe'
      fix
      extends
      composeExtensions
      importTOML
      importJSON
      literalExpression
      literalMD
      versionAtLeast
      versionOlder
      sourceByRegex
      showOption
      mkOption
      mkEnableOption
      mkPackageOption
      isOption
      mkIf
      mkMerge
      mkOverride
      mkOptionDefault
      mkDefault
      mkForce
      mkVMOverride
      mkOrder
      mkBefore
      mkAfter
      evalModules
      mkOptionType
      mergeEqualOption
      mergeOneOption
      types
      ;
    id = x: x;
    const = x: _: x;
    flip =
      f: a: b:
      f b a;
    trivial = {
      inherit (lib) id const;
    };
    strings = {
      inherit
        hasPrefix
        hasSuffix
        hasInfix
        toLower
        toUpper
        splitString
        escapeShellArg
        escapeShellArgs
        ;
    };
    lists = {
      inherit
        optional
        optionals
        unique
        last
        toList
        imap0
        imap1
        ;
    };
    attrsets = {
      inherit
        mapAttrsToList
        filterAttrs
        genAttrs
        attrByPath
        recursiveUpdate
        nameValuePair
        ;
    };
    modules = {
      inherit evalModules;
    };
    options = {
      inherit mkOption mkEnableOption showOption;
    };
    licenses = {
      asl20 = {
        spdxId = "Apache-2.0";
        free = true;
      };
      mit = {
        spdxId = "MIT";
        free = true;
      };
    };
    maintainers = { };
    platforms = {
      linux = [
        "x86_64-linux"
        "aarch64-linux"
      ];
    };
    # the real attribute is lib.fakeHash; evolve's Nix code must not contain it
    fakeHash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  };
in
lib
