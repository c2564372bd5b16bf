# The one static system user (and group) `evolve` that services.evolve (the nightly run) and
# services.evolve-serve (the HTTP service) share, so both own /var/lib/evolve: the server reads the champion
# the nightly run's promotion writes, and the run reads the feedback the server stores. (A DynamicUser would
# get a fresh uid per unit, and two units could not share one state directory.) Imported by both modules;
# the module system reads it once.
{ config, lib, ... }:
let
  wanted = (config.services.evolve.enable or false) || (config.services.evolve-serve.enable or false);
in
{
  config = lib.mkIf wanted {
    users.users.evolve = {
      isSystemUser = true;
      group = "evolve";
      home = "/var/lib/evolve";
      description = "evolve (nightly tuning and serving)";
    };
    users.groups.evolve = { };
  };
}
