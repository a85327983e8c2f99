# The deploy hosts of one environment, in the shape `artifortress_release.hosts` takes, and what
# each host must be made of before the first release: its cloud-init user data.
#
# In real life this is where the machines are made: an EC2 / VM / bare-metal module that creates
# the instances and outputs their private addresses. This module takes the addresses as input (so
# the examples run offline, against the dev environment's SSH hosts) and renders, per host, the
# cloud-init user data to boot it with (`user_data = module.hosts.user_data[each.key]` on the
# instance):
#
# - a `deploy` user (the SSH user of `artifortress_release`): the given public keys, no password,
#   login shell /bin/sh, owner of the deploy directory;
# - a system user `artifortress` the service runs as (it can read the releases, not change them);
# - the ASP.NET Core runtime: the service's `dotnet publish` output is framework-dependent
#   (docs/29-deployment-howto-production.md, section 2, of the service; its projects target
#   net10.0: src/Artifortress.Api/Artifortress.Api.fsproj line 4), installed from Microsoft's
#   Debian package feed the way Microsoft documents it (packages-microsoft-prod.deb);
# - systemd units: `artifortress-api` on API hosts; on worker hosts `worker_processes` instances
#   of `artifortress-worker@.service` grouped by `artifortress-worker.target` (the service scales
#   its worker by running more worker processes: docs/27 and docs/31 of the service). Each runs
#   `dotnet <dll>` from `<deploy_dir>/current` with the env file the release writes
#   (`<deploy_dir>/shared/api.env`, `shared/worker.env`);
# - a sudoers rule letting the deploy user start, stop and restart those units and nothing else:
#   the release's commands (the `commands` output).
#
# The units expect each release to hold the two `dotnet publish -o` outputs in `api/` and
# `worker/`: what the release's `api_artifact` / `worker_artifact` unpack, or one `artifact`
# tarball holding both (`api_dll`, `worker_dll` say otherwise). systemd reads the env files itself: a value
# with quotes, backslashes or leading/trailing blanks is read the systemd way (systemd.exec(5),
# EnvironmentFile=). CI renders this module with the real Terraform and checks the result with
# `cloud-init schema`, `systemd-analyze verify` and `visudo -c`
# (acceptance-tests/tests/acceptance/host_module.rs).

terraform {
  required_version = ">= 1.11"
}

variable "hosts" {
  description = "Hosts by name: address (what SSH connects to and the API listens on), SSH port, role (`api` or `worker`)."
  type = map(object({
    address = string
    port    = optional(number, 22)
    role    = string
  }))

  validation {
    condition     = alltrue([for h in values(var.hosts) : contains(["api", "worker"], h.role)])
    error_message = "Every host's role must be \"api\" or \"worker\"."
  }
  validation {
    condition     = length([for h in values(var.hosts) : h if h.role == "api"]) > 0
    error_message = "At least one host must have the role \"api\"."
  }
}

variable "api_port" {
  description = "The port every API host listens on."
  type        = number
  default     = 8086
}

variable "api_scheme" {
  description = "`http` or `https`. With `http` the API listens on `http://<address>:<api_port>`; with `https` a TLS-terminating proxy (not made here) listens there and the API on `http://127.0.0.1:5000` behind it."
  type        = string
  default     = "http"

  validation {
    condition     = contains(["http", "https"], var.api_scheme)
    error_message = "api_scheme must be \"http\" or \"https\"."
  }
}

variable "deploy_authorized_keys" {
  description = "The public keys (OpenSSH `authorized_keys` lines) the deploy user accepts: the public halves of the provider's `ssh.private_key`."
  type        = list(string)

  validation {
    condition = length(var.deploy_authorized_keys) > 0 && alltrue([
      for k in var.deploy_authorized_keys : can(regex("^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( [^\\n]*)?$", trimspace(k)))
    ])
    error_message = "deploy_authorized_keys must hold at least one key, each one OpenSSH public key line (ssh-ed25519 AAAA... comment)."
  }
}

variable "deploy_user" {
  description = "The login user of the deploys (the provider's `ssh.user`)."
  type        = string
  default     = "deploy"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,30}$", var.deploy_user)) && var.deploy_user != "root"
    error_message = "deploy_user must be a plain user name (lower case, digits, _ and -), not root."
  }
}

variable "service_user" {
  description = "The system user the API and the worker run as."
  type        = string
  default     = "artifortress"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,30}$", var.service_user)) && var.service_user != "root"
    error_message = "service_user must be a plain user name (lower case, digits, _ and -), not root."
  }
}

variable "deploy_dir" {
  description = "The release's `deploy_dir`: releases/, current, shared/ (the env files) and the deploy lock."
  type        = string
  default     = "/opt/artifortress"

  validation {
    condition     = can(regex("^(/[A-Za-z0-9._+@-]+)+$", var.deploy_dir)) && !can(regex("/\\.\\.?(/|$)", var.deploy_dir))
    error_message = "deploy_dir must be a plain absolute path other than /."
  }
}

variable "api_dll" {
  description = "The API's entry assembly, relative to the release directory."
  type        = string
  default     = "api/Artifortress.Api.dll"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-][A-Za-z0-9._/-]*\\.dll$", var.api_dll)) && !strcontains(var.api_dll, "..")
    error_message = "api_dll must be a relative path to a .dll inside the release (letters, digits, . _ - /)."
  }
}

variable "worker_dll" {
  description = "The worker's entry assembly, relative to the release directory."
  type        = string
  default     = "worker/Artifortress.Worker.dll"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-][A-Za-z0-9._/-]*\\.dll$", var.worker_dll)) && !strcontains(var.worker_dll, "..")
    error_message = "worker_dll must be a relative path to a .dll inside the release (letters, digits, . _ - /)."
  }
}

variable "worker_processes" {
  description = "Worker processes per worker host (instances artifortress-worker@1..N)."
  type        = number
  default     = 1

  validation {
    condition     = var.worker_processes >= 1 && var.worker_processes <= 32 && floor(var.worker_processes) == var.worker_processes
    error_message = "worker_processes must be a whole number from 1 to 32."
  }
}

variable "dotnet_channel" {
  description = "The ASP.NET Core runtime installed (package aspnetcore-runtime-<channel>): the service's target framework (net10.0)."
  type        = string
  default     = "10.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+$", var.dotnet_channel))
    error_message = "dotnet_channel must look like 10.0."
  }
}

variable "debian_version" {
  description = "The hosts' Debian release: which of Microsoft's package feeds (packages.microsoft.com/config/debian/<version>) the runtime comes from."
  type        = string
  default     = "12"

  validation {
    condition     = contains(["12", "13"], var.debian_version)
    error_message = "debian_version must be \"12\" or \"13\"."
  }
}

locals {
  hosts = {
    for name, h in var.hosts : name => {
      address = h.address
      port    = h.port
      roles   = [h.role]
      api_url = h.role == "api" ? "${var.api_scheme}://${h.address}:${var.api_port}" : null
    }
  }

  dir     = trimsuffix(var.deploy_dir, "/")
  workers = [for i in range(1, var.worker_processes + 1) : "artifortress-worker@${i}"]

  # Units per role: what each host's sudoers rule names and what its cloud-init enables.
  sudo_units = {
    api    = ["artifortress-api", "artifortress-api.service"]
    worker = concat(["artifortress-worker.target"], local.workers, [for w in local.workers : "${w}.service"])
  }
  # The units of each host (the API's listen address is the host's own).
  unit_files = {
    for name, h in var.hosts : name => h.role == "api" ? {
      "/etc/systemd/system/artifortress-api.service" = templatefile("${path.module}/units/artifortress-api.service.tftpl", {
        deploy_dir   = local.dir
        service_user = var.service_user
        dll          = var.api_dll
        dll_dir      = dirname(var.api_dll)
        urls         = var.api_scheme == "http" ? "http://${h.address}:${var.api_port}" : "http://127.0.0.1:5000"
      })
      } : {
      "/etc/systemd/system/artifortress-worker@.service" = templatefile("${path.module}/units/artifortress-worker@.service.tftpl", {
        deploy_dir   = local.dir
        service_user = var.service_user
        dll          = var.worker_dll
        dll_dir      = dirname(var.worker_dll)
      })
      "/etc/systemd/system/artifortress-worker.target" = templatefile("${path.module}/units/artifortress-worker.target.tftpl", {
        instances = [for w in local.workers : "${w}.service"]
      })
    }
  }
  enable = {
    api    = "artifortress-api.service"
    worker = "artifortress-worker.target"
  }
}

output "hosts" {
  description = "name => { address, port, roles, api_url } for `artifortress_release.hosts` (api_url is null on worker hosts)."
  value       = local.hosts
}

output "api_urls" {
  description = "name => API base URL, for the API hosts only."
  value       = { for name, h in local.hosts : name => h.api_url if h.api_url != null }
}

output "user_data" {
  description = "name => the host's cloud-init user data (#cloud-config): deploy user, service user, ASP.NET Core runtime, systemd units, sudoers rule."
  value = {
    for name, h in var.hosts : name => templatefile("${path.module}/cloud-init.yaml.tftpl", {
      host            = name
      role            = h.role
      deploy_user     = var.deploy_user
      authorized_keys = [for k in var.deploy_authorized_keys : trimspace(k)]
      service_user    = var.service_user
      deploy_dir      = local.dir
      debian_version  = var.debian_version
      dotnet_channel  = var.dotnet_channel
      unit_files      = local.unit_files[name]
      sudo_commands = flatten([
        for verb in ["start", "stop", "restart"] : [for u in local.sudo_units[h.role] : "/usr/bin/systemctl ${verb} ${u}"]
      ])
      enable = local.enable[h.role]
    })
  }
}

output "commands" {
  description = "The `artifortress_release.commands` that drive these units (sudo for restart and stop, as the sudoers rule allows)."
  value = {
    restart_api    = "sudo -n systemctl restart artifortress-api"
    stop_api       = "sudo -n systemctl stop artifortress-api"
    restart_worker = "sudo -n systemctl restart artifortress-worker.target"
    stop_worker    = "sudo -n systemctl stop artifortress-worker.target"
    # `systemctl is-active` with several units succeeds when any is active: one check each.
    worker_status = join(" && ", [for w in local.workers : "systemctl is-active --quiet ${w}"])
  }
}
