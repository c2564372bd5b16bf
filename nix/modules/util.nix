# Helpers shared by evolve's NixOS modules (plain lib functions, nothing NixOS-specific).
{ lib }:
rec {
  # One systemd Exec*= argument: left bare when it is plainly safe, otherwise a
  # C-style double-quoted string; `%' and `$' are doubled either way so systemd
  # expands neither specifiers nor environment variables inside URLs and paths
  # (the same rule as nixpkgs' utils.escapeSystemdExecArg).
  escapeExecArg =
    arg:
    let
      s = if lib.isString arg then arg else toString arg;
      quoted = if builtins.match "[A-Za-z0-9_./:,+=@-]+" s != null then s else builtins.toJSON s;
    in
    lib.replaceStrings [ "%" "$" ] [ "%%" "$$" ] quoted;
  escapeExecArgs = lib.concatMapStringsSep " " escapeExecArg;

  # 0.9 -> "0.9" (toString would give "0.900000")
  formatFloat = x: builtins.toJSON x;

  # A password inside a connection URL: `user:secret@' in the authority, or a
  # `password=' query parameter.  Such a URL would be world-readable in the Nix
  # store, in the unit file and in `systemctl show'.
  hasPassword =
    uri:
    uri != null
    && (
      builtins.match "[A-Za-z][A-Za-z0-9+.-]*://[^/?#@]*:[^/?#@]+@.*" uri != null
      || builtins.match ".*[?&;][Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]=.*" uri != null
    );

  passwordAssertion = optionName: envFileOption: uri: {
    assertion = !(hasPassword uri);
    message = ''
      ${optionName} contains a password (`user:password@' or `password=' in the URL).
      The URL ends up world-readable in the Nix store and in `systemctl show'.
      Leave the password out of the URL and put it into the environmentFile
      (${envFileOption}) instead:
      PGPASSWORD=... (or PGPASSFILE=/path/to/a/libpq passfile) for PostgreSQL,
      MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD for an HTTP MLflow server.'';
  };
}
