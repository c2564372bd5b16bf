# NixOS VM test (needs KVM, no GPU):  nix build .#checks.x86_64-linux.vm-test
#
# One VM runs evolve's modules as deployed: the MLflow server, a stand-in for
# vLLM (nix/tests/fake-embedder.py: deterministic vectors over the same
# OpenAI-compatible API), and the nightly timer.  The test moves the clock to
# just before the scheduled time and checks that the timer fires, the oneshot
# run succeeds against the in-VM endpoint, and the OnFailure hook stays quiet.
{ self }:
{
  name = "evolve-nightly";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ self.nixosModules.default ];

      virtualisation.memorySize = 4096;
      virtualisation.cores = 2;
      virtualisation.diskSize = 4096;

      systemd.services.fake-embedder = {
        description = "deterministic OpenAI-compatible embedding endpoint (VM test)";
        wantedBy = [ "multi-user.target" ];
        before = [ "evolve.service" ];
        serviceConfig = {
          ExecStart = "${pkgs.python3.interpreter} ${./fake-embedder.py} --host 127.0.0.1 --port 8000 --dim 384";
          DynamicUser = true;
          Restart = "on-failure";
        };
      };

      # what services.evolve.onFailure points at; must never run here
      systemd.services.evolve-failed = {
        description = "marks a failed evolve run (VM test)";
        serviceConfig = {
          Type = "oneshot";
          ExecStart = "${pkgs.coreutils}/bin/touch /run/evolve-failed";
        };
      };

      services.evolve-mlflow.enable = true;

      services.evolve = {
        enable = true;
        schedule = "*-*-* 01:00:00";
        randomizedDelaySec = "0";
        studyName = "vm-test";
        nTrials = 1;
        timeout = 900;
        dataset = "scifact";
        embeddingEndpoint = "http://127.0.0.1:8000/v1";
        mlflowTrackingUri = "http://127.0.0.1:5000";
        onFailure = [ "evolve-failed.service" ];
        extraArgs = [
          "--search-space"
          "${./vm-search-space.yaml}"
          "--subset"
          "1000"
          "--seed"
          "0"
        ];
      };
    };

  testScript = ''
    machine.wait_for_unit("multi-user.target")
    machine.wait_for_unit("fake-embedder.service")
    machine.wait_for_open_port(8000)
    machine.wait_for_unit("evolve-mlflow.service")
    machine.wait_for_open_port(5000)

    with subtest("the unit is what the module promises"):
        env = machine.succeed("systemctl show evolve.service -p Environment --value")
        assert "EVOLVE_HOME=/var/lib/evolve" in env, env
        assert "NUMBA_CACHE_DIR=/var/lib/evolve/" in env, env
        machine.succeed("systemctl show evolve.service -p User --value | grep -qx evolve")
        machine.succeed("systemctl show evolve.service -p StateDirectory --value | grep -qx evolve")
        machine.succeed("systemctl show evolve.service -p OnFailure --value | grep -q evolve-failed.service")

    with subtest("the nightly timer is armed"):
        machine.wait_for_unit("evolve.timer")
        cal = machine.succeed("systemctl show evolve.timer -p TimersCalendar --value")
        assert "01:00:00" in cal, cal
        machine.succeed("systemctl show evolve.timer -p Persistent --value | grep -qx yes")
        assert machine.succeed("systemctl show evolve.timer -p LastTriggerUSecMonotonic --value").strip() in ("0", "")

    with subtest("the timer fires at the scheduled time"):
        machine.succeed("timedatectl set-ntp false || true")
        machine.succeed("date -s '00:59:50'")
        machine.wait_until_succeeds(
            "test \"$(systemctl show evolve.timer -p LastTriggerUSecMonotonic --value)\" != 0",
            timeout=180,
        )

    with subtest("the run finishes and succeeds against the in-VM endpoint"):
        machine.wait_until_succeeds(
            "systemctl show evolve.service -p ActiveState --value | grep -Eqx 'inactive|failed'"
            " && test \"$(systemctl show evolve.service -p ExecMainExitTimestampMonotonic --value)\" != 0",
            timeout=1800,
        )
        print(machine.succeed("journalctl -u evolve.service --no-pager | tail -n 60"))
        result = machine.succeed("systemctl show evolve.service -p Result --value").strip()
        assert result == "success", f"evolve.service: Result={result}"
        machine.succeed("systemctl show evolve.service -p ExecMainStatus --value | grep -qx 0")
        machine.succeed("test -n \"$(ls -A /var/lib/evolve)\"")
        machine.succeed("journalctl -u fake-embedder.service --no-pager | grep -Eq 'POST [^ ]*embeddings'")
        machine.fail("test -e /run/evolve-failed")
  '';
}
