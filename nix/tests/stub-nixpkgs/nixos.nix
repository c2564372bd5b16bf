# Stand-in for the part of NixOS that evolve's modules touch: the option
# declarations they define into (systemd units, assertions, firewall, ...),
# with nixpkgs' types, and `evalSystem`, which enforces `assertions` the way
# system.build.toplevel does.  Nothing here starts anything.
{ lib, pkgs }:
let
  inherit (lib) mkOption types;

  # nixpkgs: nixos/lib/systemd-lib.nix `unitOption`: lists concatenate, scalars must agree
  unitOption = lib.mkOptionType {
    name = "systemd option";
    description = "systemd option";
    check =
      let
        ok =
          x:
          lib.isBool x
          || lib.isInt x
          || lib.isFloat x
          || lib.isString x
          || lib.isPath x
          || lib.isDerivation x;
      in
      x: ok x || (lib.isList x && lib.all ok x);
    merge =
      loc: defs:
      if lib.any (d: lib.isList d.value) defs then
        lib.concatMap (d: lib.toList d.value) defs
      else
        lib.mergeEqualOption loc defs;
  };

  unitList = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };

  commonUnit = {
    enable = mkOption {
      type = types.bool;
      default = true;
    };
    description = mkOption {
      type = types.str;
      default = "";
    };
    documentation = unitList;
    wantedBy = unitList;
    requiredBy = unitList;
    upheldBy = unitList;
    before = unitList;
    after = unitList;
    wants = unitList;
    requires = unitList;
    bindsTo = unitList;
    partOf = unitList;
    conflicts = unitList;
    onFailure = unitList;
    onSuccess = unitList;
    unitConfig = mkOption {
      type = types.attrsOf unitOption;
      default = { };
    };
  };

  serviceModule = {
    options = commonUnit // {
      environment = mkOption {
        type = types.attrsOf (
          types.nullOr (
            types.oneOf [
              types.str
              types.path
              types.package
            ]
          )
        );
        default = { };
      };
      path = mkOption {
        type = types.listOf (types.either types.package types.str);
        default = [ ];
      };
      serviceConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
      script = mkOption {
        type = types.lines;
        default = "";
      };
      preStart = mkOption {
        type = types.lines;
        default = "";
      };
      postStart = mkOption {
        type = types.lines;
        default = "";
      };
      restartIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
      stopIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
      restartTriggers = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      startAt = mkOption {
        type = types.either types.str (types.listOf types.str);
        default = [ ];
      };
      startLimitIntervalSec = mkOption {
        type = types.nullOr types.int;
        default = null;
      };
      startLimitBurst = mkOption {
        type = types.nullOr types.int;
        default = null;
      };
    };
  };

  timerModule = {
    options = commonUnit // {
      timerConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
    };
  };

  baseModule = {
    options = {
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      systemd.services = mkOption {
        type = types.attrsOf (types.submodule serviceModule);
        default = { };
      };
      systemd.timers = mkOption {
        type = types.attrsOf (types.submodule timerModule);
        default = { };
      };
      environment.systemPackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
      # nixpkgs: nixos/modules/config/users-groups.nix (the part evolve's modules set)
      users.users = mkOption {
        type = types.attrsOf (
          types.submodule {
            options = {
              isSystemUser = mkOption {
                type = types.bool;
                default = false;
              };
              isNormalUser = mkOption {
                type = types.bool;
                default = false;
              };
              group = mkOption {
                type = types.str;
                default = "";
              };
              home = mkOption {
                type = types.path;
                default = "/var/empty";
              };
              description = mkOption {
                type = types.str;
                default = "";
              };
            };
          }
        );
        default = { };
      };
      users.groups = mkOption {
        type = types.attrsOf (types.submodule { options.gid = mkOption { type = types.nullOr types.int; default = null; }; });
        default = { };
      };
      networking.firewall.allowedTCPPorts = mkOption {
        type = types.listOf types.port;
        default = [ ];
      };
      system.stateVersion = mkOption {
        type = types.str;
        default = "25.05";
      };
      # what pkgs.testers.runNixOSTest adds for its nodes
      virtualisation = {
        memorySize = mkOption {
          type = types.ints.positive;
          default = 1024;
        };
        cores = mkOption {
          type = types.ints.positive;
          default = 1;
        };
        diskSize = mkOption {
          type = types.ints.positive;
          default = 1024;
        };
      };
    };
  };

  evalSystem =
    modules:
    let
      eval = lib.evalModules {
        # nixpkgs' own modules evolve's modules meet: services.ollama (./ollama.nix)
        modules = [ baseModule ./ollama.nix ] ++ modules;
        specialArgs = {
          inherit pkgs;
          modulesPath = "/stand-in/nixos/modules";
        };
      };
      failed = map (a: a.message) (lib.filter (a: !a.assertion) eval.config.assertions);
    in
    if failed == [ ] then
      eval.config
    else
      throw "\nFailed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failed}";
in
{
  inherit baseModule evalSystem unitOption;
}
