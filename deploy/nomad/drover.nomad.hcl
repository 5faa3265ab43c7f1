# One Drover daemon on every Nomad client node (docs/DEPLOY.md, "Nomad").
#
#   nomad job run deploy/nomad/drover.nomad.hcl
#
# Each node needs: /usr/local/bin/drover; a `drover` user; /var/lib/drover/state and
# /var/lib/drover/work owned by it, 0700; the raw_exec driver enabled in the client's
# configuration (plugin "raw_exec" { config { enabled = true } }).
job "drover" {
  # A system job: the scheduler places one allocation on every eligible client node, including
  # nodes that join later; no home-made scheduling.
  type        = "system"
  datacenters = ["*"]

  group "drover" {
    # Fixed ports on the node's address: clients keep one context per node, and a static port
    # survives the allocation being replaced.
    network {
      port "control" {
        static = 7710
      }
      port "pub" {
        static = 7711
      }
      port "http" {
        static = 7712
      }
    }

    # Registered in Nomad's own service catalogue: `nomad service info drover` lists every
    # daemon's address (DEPLOY.md, "How clients find the daemons"). A TCP check only: the HTTP
    # health route needs a token, and script checks need Consul.
    service {
      name     = "drover"
      provider = "nomad"
      port     = "control"

      check {
        type     = "tcp"
        port     = "control"
        interval = "10s"
        timeout  = "2s"
      }
    }

    # A crash is restarted in place; the registry and logs in the state directory survive it.
    restart {
      attempts = 10
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    task "drover" {
      # raw_exec: agents run on the node itself, next to the code they work on, as the daemon's
      # user (the `exec` driver would chroot them away from the node's repositories).
      driver = "raw_exec"
      user   = "drover"

      config {
        command = "/usr/local/bin/drover"
        # Control and PUB bind the node's address as Nomad sees it: the daemon refuses a
        # wildcard, because it tells clients the address to subscribe to. HTTP off loopback is
        # TLS only (self-signed in the state directory) and needs a token.
        args = [
          "serve",
          "--control", "tcp://${NOMAD_ADDR_control}",
          "--pub", "tcp://${NOMAD_ADDR_pub}",
          "--http", "${NOMAD_ADDR_http}",
          "--state-dir", "/var/lib/drover/state",
          "--work-dir", "/var/lib/drover/work",
        ]
      }

      env {
        # Agent CLIs keep their settings in $HOME (e.g. ~/.claude).
        HOME = "/var/lib/drover"
      }

      # Nomad ends every process of the task when it stops it (its cgroup), holders included, so
      # the daemon keeps its default on_shutdown = "stop" and stops its agents itself: SIGTERM,
      # SIGKILL after the 10 s grace, bounded by the grace plus 5 s. kill_timeout leaves room
      # for that before Nomad sends SIGKILL.
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      # Agents run inside this task and count against it. memory_max lets them burst past the
      # reservation where the client allows oversubscription.
      resources {
        cpu        = 500
        memory     = 512
        memory_max = 8192
      }
    }
  }
}
